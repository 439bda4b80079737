//! Hosted hex repositories (`[[hex.hosted]]`), with real clients: releases are published with
//! the hex client code rebar3 ships (`tests/fixtures/hex/publish.escript` drives its vendored
//! hex_core), and rebar3 resolves and compiles projects through `/hex/repos/team`, which holds
//! the team's packages and, with `fallback`, every other name from the fixture upstream.
//!
//! The repository is signed with the committed `other_key.pem`; projects pin its public half.

use std::path::{Path, PathBuf};

use pkgmirror::hex::{HexPublicKey, Package, RegistryVerifier};

use crate::support::hex_fixtures::{release, serve, standard, standard_packages};
use crate::support::rebar3::{Publish, Rebar3User, assert_locked, single_repository_config};
use crate::support::s3_server::{S3Server, unique_bucket};
use crate::support::tools::{self, Run, Tool};
use crate::support::*;

const TEAM_KEY_PUB: &str = include_str!("../fixtures/hex/other_key.pub.pem");

fn team_key_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hex/other_key.pem")
}

/// A config file with the hosted repository `team` (its key the committed `other_key.pem`).
fn team_config(dir: &Path, fallback: bool) -> PathBuf {
    let path = dir.join("team.toml");
    std::fs::write(
        &path,
        format!(
            "[[hex.hosted]]\nname = \"team\"\nsigning_key = \"{}\"\nfallback = {fallback}\n",
            team_key_path().display()
        ),
    )
    .unwrap();
    path
}

fn team_verifier() -> RegistryVerifier {
    RegistryVerifier::new(HexPublicKey::from_pem(TEAM_KEY_PUB).unwrap()).with_repository("team")
}

/// `/hex/repos/team/packages/{name}` of `server`, verified with the team key.
async fn team_package(server: &Server, name: &str) -> Package {
    let response = client()
        .get(server.url(&format!("/hex/repos/team/packages/{name}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{name}: {}", server.logs());
    let body = response.bytes().await.unwrap();
    team_verifier()
        .package(name, &body)
        .unwrap_or_else(|e| panic!("/hex/repos/team/packages/{name} does not verify: {e}"))
}

fn versions(package: &Package) -> Vec<&str> {
    package.releases.iter().map(|r| r.version.as_str()).collect()
}

/// Asserts that rebar3 built the project and `rebar.lock` pins each of `pinned`.
fn assert_built(user: &Rebar3User, run: &Run, project: &Path, pinned: &[(&str, &str)], server: &Server) {
    assert!(
        run.ok(),
        "rebar3 failed\n{}\n{}",
        user.transcript(),
        server.logs()
    );
    assert_locked(user, project, pinned);
    for (app, _) in pinned {
        let beam = project.join(format!("_build/default/lib/{app}/ebin/{app}.beam"));
        assert!(
            beam.is_file(),
            "{} was not built\n{}",
            beam.display(),
            user.transcript()
        );
    }
}

fn assert_refused(publish: &Publish, status: u16, says: &str, user: &Rebar3User) {
    assert_eq!(publish.status, status, "{}", user.transcript());
    assert!(
        publish.body.contains(says),
        "the client was told {:?}, not {says:?}\n{}",
        publish.body,
        user.transcript()
    );
}

/// Publish through rebar3's hex client; then a project needing one hosted and one public
/// package compiles through `/hex/repos/team`, again after the upstream publishes the hosted
/// name at a higher version (ignored), and again with the upstream down. Tampered and
/// conflicting publishes are refused with the reason; the UI and `/admin` show and retire the
/// hosted releases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosted_repository_publishes_and_resolves_with_the_upstream_behind_it() {
    use crate::support::web::{self, Browser, act, sign_in};
    if tools::require(Tool::Rebar3).is_none() {
        return;
    }
    let fake = FakeIndex::start();
    serve(&fake, &standard());
    let data = temp_dir();
    let config = team_config(data.path(), true);
    let mut launch = Launch::with_hex(&fake.root_url(), "1s");
    launch
        .arg("--config")
        .arg(config.to_str().unwrap())
        .env("PKGMIRROR__SERVER__ADMIN_TOKEN", web::TOKEN);
    let token = token_command(
        data.path(),
        &["create", "--name", "ci", "--scope", "upload:hex:team"],
        &[],
    );
    let other_scope = token_command(
        data.path(),
        &["create", "--name", "pypi-ci", "--scope", "upload:internal"],
        &[],
    );
    let server = Server::start(data.path(), &launch);
    let api = server.url("/hex/api");
    let repo_url = server.url("/hex/repos/team");
    let mut publisher = Rebar3User::new();

    // Published to the one hosted repository (`/hex/api/publish`), then the same bytes again
    // through the repository's own path: 201, then 200 with nothing changed.
    let teamlib = ("teamlib", "0.1.0");
    let first = publisher
        .publish(&api, &token, None, teamlib, &[("fixfoo", "~> 1.0")], "none")
        .await;
    assert_eq!(first.status, 201, "{}\n{}", publisher.transcript(), server.logs());
    assert!(
        first.body.contains("<<\"publisher\">> => <<\"ci\">>"),
        "{}",
        first.body
    );
    assert!(
        first.body.contains(&first.outer),
        "the answer names the checksum: {}",
        first.body
    );
    let again = publisher
        .publish(
            &api,
            &token,
            Some("team"),
            teamlib,
            &[("fixfoo", "~> 1.0")],
            "none",
        )
        .await;
    assert_eq!(again.status, 200, "{}", publisher.transcript());
    assert_eq!(again.outer, first.outer, "the escript builds the same bytes");

    // Refusals the client shows: a tampered tarball, other bytes under a published version, a
    // token without the scope, no token, a repository that is not hosted.
    let tampered = publisher
        .publish(&api, &token, Some("team"), ("teamlib", "0.2.0"), &[], "checksum")
        .await;
    assert_refused(&tampered, 422, "the tarball's CHECKSUM says", &publisher);
    let conflict = publisher
        .publish(
            &api,
            &token,
            Some("team"),
            teamlib,
            &[("fixfoo", "~> 1.0")],
            "bytes",
        )
        .await;
    assert_refused(
        &conflict,
        409,
        "is already published with other bytes",
        &publisher,
    );
    let unscoped = publisher
        .publish(&api, &other_scope, None, ("teamlib", "0.3.0"), &[], "none")
        .await;
    assert_refused(&unscoped, 403, "does not grant upload:hex:team", &publisher);
    let anonymous = publisher
        .publish(&api, "pkgm_nope_nope", None, ("teamlib", "0.3.0"), &[], "none")
        .await;
    assert_refused(&anonymous, 401, "not valid", &publisher);
    let elsewhere = publisher
        .publish(&api, &token, Some("acme"), ("teamlib", "0.3.0"), &[], "none")
        .await;
    assert_refused(
        &elsewhere,
        404,
        r#"no hosted hex repository is named \"acme\""#,
        &publisher,
    );
    assert_eq!(versions(&team_package(&server, "teamlib").await), ["0.1.0"]);

    // A project needing the hosted package and a public one (which needs another).
    let deps = [("teamlib", "0.1.0"), ("fixbar", "0.1.0")];
    let pinned = [("teamlib", "0.1.0"), ("fixbar", "0.1.0"), ("fixfoo", "1.1.0")];
    let rebar_config = single_repository_config(&deps, "team", &repo_url, TEAM_KEY_PUB);
    let mut user = Rebar3User::new();
    let (run, project) = user
        .compile_project(&rebar_config, &["teamlib", "fixbar"], &repo_url)
        .await;
    assert_built(&user, &run, &project, &pinned, &server);
    let served_key = client()
        .get(server.url("/hex/repos/team/public_key"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(served_key.trim(), TEAM_KEY_PUB.trim(), "the key clients pin");
    let fixbar = team_package(&server, "fixbar").await;
    assert_eq!(
        fixbar.repository, "team",
        "a public package under the team's name"
    );
    assert_eq!(
        fake.hits_of("/packages/teamlib"),
        0,
        "a hosted name is never asked upstream"
    );

    // The upstream publishes the hosted name at a higher version: rebar3 still gets the
    // hosted one, and no registry file of the repository lists the upstream's.
    let upstream = standard_packages()
        .package("teamlib", vec![release("9.0.0", &[])])
        .build();
    assert_eq!(
        upstream.file("/tarballs/fixbar-0.1.0.tar"),
        standard().file("/tarballs/fixbar-0.1.0.tar"),
        "the public packages stay as they were"
    );
    serve(&fake, &upstream);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let any_teamlib = single_repository_config(&[("teamlib", ">= 0.0.0")], "team", &repo_url, TEAM_KEY_PUB);
    let mut user = Rebar3User::new();
    let (run, project) = user.compile_project(&any_teamlib, &["teamlib"], &repo_url).await;
    assert_built(&user, &run, &project, &[("teamlib", "0.1.0")], &server);
    assert_eq!(versions(&team_package(&server, "teamlib").await), ["0.1.0"]);
    let body = client()
        .get(server.url("/hex/repos/team/versions"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let listed = team_verifier()
        .versions(&body)
        .expect("/versions verifies with the team key");
    let teamlib_entry = listed.packages.iter().find(|p| p.name == "teamlib").unwrap();
    assert_eq!(teamlib_entry.versions, ["0.1.0"]);
    assert!(
        listed.packages.iter().any(|p| p.name == "fixbaz"),
        "merged with the upstream's"
    );
    let upstream_tarball = client()
        .get(server.url("/hex/repos/team/tarballs/teamlib-9.0.0.tar"))
        .send()
        .await
        .unwrap();
    assert_eq!(upstream_tarball.status(), 404);
    assert_eq!(fake.hits_of("/packages/teamlib"), 0);
    assert_eq!(fake.hits_of("/tarballs/teamlib-9.0.0.tar"), 0);

    // The upstream down: a new machine's rebar3 still builds the project from the mirror.
    fake.stop();
    let mut offline = Rebar3User::new();
    let (run, project) = offline
        .compile_project(&rebar_config, &["teamlib", "fixbar"], &repo_url)
        .await;
    assert_built(&offline, &run, &project, &pinned, &server);

    // The hex API: the package as hex.pm describes one, the token as the user, and retiring
    // through rebar3's hex client (with the token that may publish there, and only that one).
    let described = get_json(&server.url("/hex/api/packages/teamlib")).await;
    assert_eq!(described["repository"], "team", "{described}");
    assert_eq!(described["releases"][0]["version"], "0.1.0", "{described}");
    let not_a_name = client()
        .get(server.url("/hex/api/packages/Team.Lib"))
        .send()
        .await
        .unwrap();
    assert_eq!(not_a_name.status(), 400);
    let me = client()
        .get(server.url("/hex/api/users/me"))
        .header("authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.json::<serde_json::Value>().await.unwrap()["username"], "ci");
    let refused = publisher
        .retire(&api, &other_scope, None, teamlib, Some(("security", "x")))
        .await;
    assert_refused(&refused, 403, "does not grant upload:hex:team", &publisher);
    let bad_reason = publisher
        .retire(&api, &token, None, teamlib, Some(("bored", "x")))
        .await;
    assert_refused(&bad_reason, 422, "is not one of other, invalid", &publisher);
    let retired = publisher
        .retire(
            &api,
            &token,
            Some("team"),
            teamlib,
            Some(("deprecated", "use 0.2")),
        )
        .await;
    assert_eq!(retired.status, 204, "{}", publisher.transcript());
    let status = team_package(&server, "teamlib").await.releases[0].retired.clone();
    assert_eq!(status.and_then(|s| s.message).as_deref(), Some("use 0.2"));
    let unretired = publisher.retire(&api, &token, None, teamlib, None).await;
    assert_eq!(unretired.status, 204, "{}", publisher.transcript());
    assert!(
        team_package(&server, "teamlib").await.releases[0]
            .retired
            .is_none()
    );

    // The UI lists the hosted package with its publisher; /admin retires and unretires.
    let mut b = Browser::new(&server);
    let list = b.get("/packages?ecosystem=hex").await;
    let row = web::row_linking(&list.body, "teamlib");
    assert!(row.contains("hosted: team") && row.contains("ci"), "{row}");
    let page = b.get("/packages/hex/teamlib").await;
    assert!(page.body.contains("id=\"hosted-note\""), "{}", page.body);
    assert!(page.body.contains("<td class=\"publisher\">ci"), "{}", page.body);
    assert!(page.body.contains(&first.outer), "{}", page.body);
    let csrf = sign_in(&mut b).await;
    let release = [
        ("repository", "team"),
        ("project", "teamlib"),
        ("version", "0.1.0"),
        ("reason", "security"),
        ("message", "CVE-2026-1"),
    ];
    let back = "/admin?project=teamlib";
    let (_, row) = act(&mut b, &csrf, "hex-retire", &release, back).await;
    assert_eq!(row.2, "ok: retired (security)", "{row:?}");
    let retired = team_package(&server, "teamlib").await;
    let status = retired.releases[0].retired.as_ref().expect("retired");
    assert_eq!(status.message.as_deref(), Some("CVE-2026-1"));
    let page = b.get("/packages/hex/teamlib").await;
    assert!(
        page.body.contains("retired: security: CVE-2026-1"),
        "{}",
        page.body
    );
    let (_, row) = act(&mut b, &csrf, "hex-unretire", &release[..3], back).await;
    assert_eq!(row.2, "ok: no longer retired", "{row:?}");
    assert!(
        team_package(&server, "teamlib").await.releases[0]
            .retired
            .is_none()
    );
    let missing = [
        ("repository", "team"),
        ("project", "teamlib"),
        ("version", "7.0.0"),
    ];
    let (_, row) = act(&mut b, &csrf, "hex-unretire", &missing, back).await;
    assert!(
        row.2.starts_with("refused: teamlib has no release 7.0.0"),
        "{row:?}"
    );
}

/// Two nodes on one bucket: the token and the package's record live in the bucket, so a
/// release published through one node resolves and compiles through the other, and the other
/// way round. Without `fallback` and with the hex mirror off, the repository is the team's alone.
/// B needs a token to read, which rebar3 sends as its `repo_key`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_published_through_one_node_resolves_through_another_on_the_bucket() {
    if !tools::require_all(&[Tool::Moto, Tool::Rebar3]) {
        return;
    }
    let s3 = S3Server::start();
    let bucket = unique_bucket();
    s3.create_bucket(&bucket).await;
    let mut env = s3.env(&bucket);
    env.push(("PKGMIRROR__STORAGE__BACKEND".into(), "s3".into()));
    let (dir_a, dir_b) = (temp_dir(), temp_dir());
    let token = token_command(
        dir_a.path(),
        &["create", "--name", "ci", "--scope", "upload:hex:team"],
        &env,
    );
    let reader = token_command(
        dir_a.path(),
        &["create", "--name", "builds", "--scope", "read"],
        &env,
    );
    // B lets no one read without a token: rebar3 sends its `repo_key` as hex clients do.
    let node = |dir: &Path, backend: &str, anonymous_read: &str| {
        let config = team_config(dir, false);
        let mut launch = Launch::default();
        launch
            .arg("--config")
            .arg(config.to_str().unwrap())
            .env("PKGMIRROR__STORAGE__BACKEND", backend)
            .env("PKGMIRROR__SERVER__ANONYMOUS_READ", anonymous_read);
        for (key, value) in s3.env(&bucket) {
            launch.env(&key, &value);
        }
        Server::start(dir, &launch)
    };
    let node_a = node(dir_a.path(), "s3", "true");
    let node_b = node(dir_b.path(), "tiered", "false");

    let mut publisher = Rebar3User::new();
    let published = publisher
        .publish(
            &node_a.url("/hex/api"),
            &token,
            Some("team"),
            ("teamlib", "0.1.0"),
            &[],
            "none",
        )
        .await;
    assert_eq!(
        published.status,
        201,
        "{}\n{}",
        publisher.transcript(),
        node_a.logs()
    );
    let keys = s3.keys(&bucket).await;
    assert!(
        keys.iter().any(|k| k == "records/hosted/hex/team/teamlib"),
        "{keys:?}"
    );

    let repo_b = node_b.url("/hex/repos/team");
    let config = single_repository_config(&[("teamlib", "0.1.0")], "team", &repo_b, TEAM_KEY_PUB);
    let mut user = Rebar3User::new();
    let (run, _) = user.compile_project(&config, &["teamlib"], &repo_b).await;
    assert!(
        !run.ok(),
        "B served rebar3 without a token\n{}",
        user.transcript()
    );
    assert!(
        node_b.logged("path=/hex/repos/team/packages/teamlib version=\"HTTP/1.1\" status=401"),
        "{}",
        node_b.logs()
    );
    let with_key = config.replace(
        "repo_url =>",
        &format!("repo_key => <<\"{reader}\">>, repo_url =>"),
    );
    let (run, project) = user.compile_project(&with_key, &["teamlib"], &repo_b).await;
    assert_built(&user, &run, &project, &[("teamlib", "0.1.0")], &node_b);
    let tarball = client()
        .get(node_b.url("/hex/repos/team/tarballs/teamlib-0.1.0.tar"))
        .header("authorization", &reader)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    use sha2::Digest as _;
    assert_eq!(hex::encode(sha2::Sha256::digest(&tarball)), published.outer);

    // The other way round: published through B, listed at once by A.
    let second = publisher
        .publish(
            &node_b.url("/hex/api"),
            &token,
            None,
            ("teamlib", "0.2.0"),
            &[],
            "none",
        )
        .await;
    assert_eq!(
        second.status,
        201,
        "{}\n{}",
        publisher.transcript(),
        node_b.logs()
    );
    assert_eq!(
        versions(&team_package(&node_a, "teamlib").await),
        ["0.1.0", "0.2.0"]
    );
    // Without fallback, a name the repository does not host is not there.
    let unknown = client()
        .get(node_a.url("/hex/repos/team/packages/fixfoo"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}
