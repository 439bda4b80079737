//! The release policy: a cooldown, a freeze date and rules hold upstream files back from every
//! client, on the pages and at the file routes.

use std::time::{Duration, SystemTime};

use serde_json::json;

use crate::support::packages::{self, Dist};
use crate::support::sandbox::{self, Sandbox};
use crate::support::tools::{self, Tool};
use crate::support::*;

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_micros(at).to_string()
}

fn ago(secs: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(secs)
}

const DAY: u64 = 86_400;

/// `foo 1.0` uploaded 30 days ago and `foo 2.0` one hour ago, on a fresh fake upstream.
fn foo_upstream() -> (FakeIndex, Dist, Dist) {
    let fake = FakeIndex::start();
    let mut old = packages::wheel("foo", "1.0", &[], None);
    old.upload_time = Some(rfc3339(ago(30 * DAY)));
    let mut young = packages::wheel("foo", "2.0", &[], None);
    young.upload_time = Some(rfc3339(ago(3600)));
    packages::serve(&fake, &[old.clone(), young.clone()]);
    (fake, old, young)
}

fn launch(fake: &FakeIndex, env: &[(&str, &str)]) -> Launch {
    let mut launch = Launch::with_upstreams(&[&fake.url()], "10m");
    launch.env("PKGMIRROR__PYPI__ALLOW_PRIVATE_UPSTREAMS", "true");
    for (key, value) in env {
        launch.env(key, value);
    }
    launch
}

/// A mirror of `fake` with `env`, on a fresh data dir (kept while the server runs).
fn start(fake: &FakeIndex, env: &[(&str, &str)]) -> (tempfile::TempDir, Server) {
    let data = temp_dir();
    let server = Server::start(data.path(), &launch(fake, env));
    (data, server)
}

async fn filenames(server: &Server, project: &str) -> serde_json::Value {
    let page = get_json(&server.url(&format!("/simple/{project}/"))).await;
    page["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filename"].clone())
        .collect()
}

/// A refused file: 403 and the policy's JSON body.
async fn refused(server: &Server, path: &str) -> serde_json::Value {
    let response = get(&server.url(path), "*/*").await;
    assert_eq!(response.status(), 403, "{path}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        (&body["status"], &body["error"]),
        (&json!("error"), &json!("policy")),
        "{body}"
    );
    body
}

#[tokio::test]
async fn a_cooldown_holds_a_young_release_back_from_every_client() {
    let (fake, old, young) = foo_upstream();
    let (_data, server) = start(&fake, &[("PKGMIRROR__POLICY__MIN_RELEASE_AGE", "3d")]);

    let page = get_json(&server.url("/simple/foo/")).await;
    assert_eq!(page["versions"], json!(["1.0"]), "{page}");
    assert_eq!(filenames(&server, "foo").await, json!([old.filename]));
    let html = get(&server.url("/simple/foo/"), "text/html")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(&old.filename) && !html.contains(&young.filename),
        "{html}"
    );

    // The young file and its metadata: 403, with when they become eligible.
    let uploaded = humantime::parse_rfc3339_weak(young.upload_time.as_deref().unwrap()).unwrap();
    let eligible = humantime::format_rfc3339_seconds(uploaded + Duration::from_secs(3 * DAY)).to_string();
    for path in [young.filename.clone(), format!("{}.metadata", young.filename)] {
        let body = refused(&server, &format!("/simple/foo/{path}")).await;
        assert_eq!(body["eligible_at"], eligible.as_str(), "{body}");
        assert_eq!(body["check"], "age");
        assert!(
            body["message"].as_str().unwrap().contains("min_release_age"),
            "{body}"
        );
    }
    assert_eq!(
        fake.hits_of(&young.path()),
        0,
        "a held-back file is never fetched"
    );
    let browser = get(
        &server.url(&format!("/simple/foo/{}", young.filename)),
        "text/html",
    )
    .await;
    assert_eq!(browser.status(), 403);
    assert!(browser.text().await.unwrap().contains("min_release_age"));

    // Every client installs the older release; asking for the young one finds nothing.
    sandbox::every_client_installs(&server.url("/simple/"), "foo", "1.0", &server).await;
    if tools::require(Tool::Pip).is_some() {
        let sandbox = Sandbox::new();
        let mut pip = sandbox.command(tools::path(Tool::Pip));
        pip.args([
            "-m",
            "pip",
            "install",
            "--index-url",
            &server.url("/simple/"),
            "--target",
        ])
        .arg(sandbox.path("target"))
        .arg("foo==2.0");
        let run = sandbox::run(pip).await;
        assert!(!run.ok(), "{}", run.report());
        assert!(
            run.stderr.contains("No matching distribution found for foo==2.0"),
            "{}",
            run.report()
        );
    }
}

#[tokio::test]
async fn a_lock_file_pinning_a_young_release_fails_on_its_download() {
    if tools::require(Tool::Uv).is_none() {
        return;
    }
    let (fake, _, young) = foo_upstream();
    let mut sandbox = Sandbox::new();
    let project = sandbox.path("project");
    std::fs::create_dir_all(&project).unwrap();

    // Locked through a mirror without a policy: the lock pins 2.0 and its URL.
    let open = temp_dir();
    let server = Server::start(open.path(), &launch(&fake, &[]));
    std::fs::write(
        project.join("pyproject.toml"),
        "[project]\nname = \"consumer\"\nversion = \"0\"\nrequires-python = \">=3.8\"\ndependencies = [\"foo\"]\n",
    )
    .unwrap();
    let mut lock = sandbox.command(tools::path(Tool::Uv));
    // The sandbox reads no tool configuration (pyproject's `[tool.uv]` included): the index is
    // given on the command line, and the lock records it.
    lock.args(["lock", "--default-index", &server.url("/simple/")])
        .current_dir(&project);
    sandbox.must(lock, &server).await;
    let locked = std::fs::read_to_string(project.join("uv.lock")).unwrap();
    assert!(locked.contains(&young.filename), "{locked}");

    // The same lock through a mirror with a cooldown: the download is refused.
    let held = temp_dir();
    let guarded = Server::start(
        held.path(),
        &launch(&fake, &[("PKGMIRROR__POLICY__MIN_RELEASE_AGE", "3d")]),
    );
    std::fs::write(
        project.join("uv.lock"),
        locked.replace(&server.base, &guarded.base),
    )
    .unwrap();
    drop(server);
    let mut sync = sandbox.command(tools::path(Tool::Uv));
    sync.args(["sync", "--frozen", "--python"])
        .arg(tools::python())
        .current_dir(&project);
    let run = sandbox::run(sync).await;
    assert!(!run.ok(), "{}", run.report());
    assert!(run.stderr.contains("403 Forbidden"), "{}", run.report());
    // uv shows the status, not the body: the mirror's log has the reason.
    let logs = guarded.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("held back by the release policy") && l.contains(&young.filename)),
        "{logs}"
    );
}

#[tokio::test]
async fn a_freeze_date_and_rules_decide_before_and_beside_the_cooldown() {
    let fake = FakeIndex::start();
    let mut dists = Vec::new();
    for (name, version, age) in [
        ("foo", "1.0", 30 * DAY),
        ("foo", "1.9", DAY),
        ("foo", "2.0", 3600),
        ("evil", "1.0", 30 * DAY),
    ] {
        let mut dist = packages::wheel(name, version, &[], None);
        dist.upload_time = Some(rfc3339(ago(age)));
        dists.push(dist);
    }
    packages::serve(&fake, &dists);
    let freeze = humantime::format_rfc3339_seconds(ago(2 * DAY)).to_string();
    let (_data, server) = start(
        &fake,
        &[
            ("PKGMIRROR__POLICY__EXCLUDE_NEWER", &freeze),
            (
                "PKGMIRROR__POLICY__RULES",
                "allow pypi foo ==2.0; hotfix,deny pypi evil; known malware",
            ),
        ],
    );
    // 1.9 is after the freeze; 2.0 is too, but a rule allows it.
    assert_eq!(
        filenames(&server, "foo").await,
        json!([dists[0].filename, dists[2].filename])
    );
    let body = refused(&server, &format!("/simple/foo/{}", dists[1].filename)).await;
    assert_eq!(
        (&body["check"], &body["eligible_at"]),
        (&json!("date"), &json!(null)),
        "{body}"
    );
    // A project denied as a whole is quarantined (PEP 792), with the rule's reason.
    let page = get_json(&server.url("/simple/evil/")).await;
    assert_eq!(
        page["project-status"],
        json!({"status": "quarantined", "reason": "known malware"}),
        "{page}"
    );
    assert_eq!(page["files"], json!([]));
    let body = refused(&server, &format!("/simple/evil/{}", dists[3].filename)).await;
    assert_eq!(body["rule"], "deny pypi evil", "{body}");
    assert_eq!(fake.hits_of(&dists[3].path()), 0);
}

#[tokio::test]
async fn files_without_an_upload_time_count_from_when_the_mirror_first_saw_them() {
    let fake = FakeIndex::start();
    let (one, two) = (
        packages::wheel("bar", "1.0", &[], None),
        packages::wheel("bar", "2.0", &[], None),
    );
    for dist in [&one, &two] {
        fake.file(&dist.path(), "application/octet-stream", dist.bytes.clone());
    }
    let links: String = [&one, &two]
        .iter()
        .map(|d| {
            format!(
                "<a href=\"{}#sha256={}\">{}</a>\n",
                d.path(),
                d.sha256,
                d.filename
            )
        })
        .collect();
    fake.html("bar/", &format!("<html><body>{links}</body></html>"));
    let (_data, server) = start(
        &fake,
        &[
            ("PKGMIRROR__POLICY__MIN_RELEASE_AGE", "3d"),
            ("PKGMIRROR__POLICY__RULES", "allow pypi bar ==1.0"),
        ],
    );
    let before = SystemTime::now() - Duration::from_secs(1);
    let page = get_json(&server.url("/simple/bar/")).await;
    let files = page["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{page}");
    assert_eq!(files[0]["filename"], one.filename);
    let seen = humantime::parse_rfc3339_weak(files[0]["upload-time"].as_str().unwrap()).unwrap();
    assert!(seen >= before && seen <= SystemTime::now(), "{page}");
    let body = refused(&server, &format!("/simple/bar/{}", two.filename)).await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("first seen by this mirror"),
        "{body}"
    );
    let eligible = humantime::parse_rfc3339_weak(body["eligible_at"].as_str().unwrap()).unwrap();
    assert!(
        eligible > SystemTime::now() + Duration::from_secs(3 * DAY - 120),
        "{body}"
    );

    // First seen stays first seen: a refresh does not restart the clock.
    let first = files[0]["upload-time"].clone();
    let forgotten = client().delete(server.url("/cache/bar")).send().await.unwrap();
    assert_eq!(forgotten.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = get_json(&server.url("/simple/bar/")).await;
    assert_eq!(again["files"][0]["upload-time"], first, "{again}");
}

/// hex registry files are signed, so they pass through as they are; the tarball of a release
/// the policy holds back is what is refused.
#[tokio::test]
async fn a_held_back_hex_release_is_refused_at_its_tarball() {
    use crate::support::hex_fixtures::{self, PUBLISHED_AT};
    let fake = FakeIndex::start();
    let repo = hex_fixtures::standard();
    hex_fixtures::serve(&fake, &repo);
    let data = temp_dir();
    // Published at PUBLISHED_AT; a freeze a day before holds every release back, but a rule
    // lets fixfoo 1.0.x through.
    let freeze = humantime::format_rfc3339_seconds(
        SystemTime::UNIX_EPOCH + Duration::from_secs(PUBLISHED_AT as u64 - DAY),
    )
    .to_string();
    let mut launch = Launch::with_hex(&fake.root_url(), "10m");
    launch.env("PKGMIRROR__POLICY__EXCLUDE_NEWER", &freeze).env(
        "PKGMIRROR__POLICY__RULES",
        "allow hex fixfoo ~> 1.0.0; pinned by the team",
    );
    let server = Server::start(data.path(), &launch);

    let registry = get(&server.url("/hex/packages/fixfoo"), "*/*").await;
    assert_eq!(registry.status(), 200);
    assert_eq!(
        registry.bytes().await.unwrap().as_ref(),
        repo.file("/packages/fixfoo"),
        "unchanged"
    );
    let allowed = get(&server.url("/hex/tarballs/fixfoo-1.0.0.tar"), "*/*").await;
    assert_eq!(allowed.status(), 200);
    let body = refused(&server, "/hex/tarballs/fixfoo-1.1.0.tar").await;
    assert_eq!(
        (&body["check"], &body["eligible_at"]),
        (&json!("date"), &json!(null)),
        "{body}"
    );
    assert_eq!(fake.hits_of("/tarballs/fixfoo-1.1.0.tar"), 0);
    let page = get(&server.url("/packages/hex/fixfoo"), "text/html")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("<tr class=\"held\">"), "{page}");
    assert!(
        page.contains("held back: uploaded 2024-01-01T00:00:00Z, after policy.exclude_newer"),
        "{page}"
    );
}

#[tokio::test]
async fn a_rule_added_in_admin_applies_at_once_and_goes_with_its_removal() {
    use crate::support::web::{self, Browser, act, sign_in};
    let (fake, old, young) = foo_upstream();
    let (data, server) = start(
        &fake,
        &[
            ("PKGMIRROR__POLICY__MIN_RELEASE_AGE", "3d"),
            ("PKGMIRROR__SERVER__ADMIN_TOKEN", web::TOKEN),
        ],
    );
    assert_eq!(filenames(&server, "foo").await, json!([old.filename]));

    let mut b = Browser::new(&server);
    let csrf = sign_in(&mut b).await;
    let rule = [
        ("rule_action", "allow"),
        ("rule_ecosystem", "pypi"),
        ("rule_project", "Foo"),
        ("rule_versions", "==2.0"),
        ("reason", "reviewed hotfix"),
    ];
    let (page, row) = act(&mut b, &csrf, "policy-add", &rule, "/admin").await;
    assert_eq!(row.2, "ok: rule 1 added: allow pypi foo ==2.0; reviewed hotfix");
    assert!(
        page.body.contains("<td class=\"mono\">allow pypi foo ==2.0</td>"),
        "{}",
        page.body
    );
    let (_, row) = act(
        &mut b,
        &csrf,
        "policy-add",
        &[
            ("rule_action", "deny"),
            ("rule_ecosystem", "pypi"),
            ("rule_project", "x"),
            ("reason", ""),
        ],
        "/admin",
    )
    .await;
    assert_eq!(row.2, "refused: say why: a rule needs a reason");

    // At once, without a restart: every client gets 2.0.
    assert_eq!(
        filenames(&server, "foo").await,
        json!([old.filename, young.filename])
    );
    sandbox::every_client_installs(&server.url("/simple/"), "foo", "2.0", &server).await;

    let (_, row) = act(&mut b, &csrf, "policy-remove", &[("rule_id", "1")], "/admin").await;
    assert_eq!(row.2, "ok: rule 1 removed: allow pypi foo ==2.0; reviewed hotfix");
    assert_eq!(filenames(&server, "foo").await, json!([old.filename]));
    refused(&server, &format!("/simple/foo/{}", young.filename)).await;

    // The rules outlive a restart.
    act(&mut b, &csrf, "policy-add", &rule, "/admin").await;
    drop(server);
    let server = Server::start(
        data.path(),
        &launch(&fake, &[("PKGMIRROR__POLICY__MIN_RELEASE_AGE", "3d")]),
    );
    assert_eq!(
        filenames(&server, "foo").await,
        json!([old.filename, young.filename])
    );
}

#[tokio::test]
async fn sighup_reloads_the_policy_of_the_configuration_file() {
    let (fake, old, young) = foo_upstream();
    let data = temp_dir();
    let file = data.path().join("pkgmirror.toml");
    std::fs::write(&file, "[policy]\nmin_release_age = \"0s\"\n").unwrap();
    let mut launch = launch(&fake, &[]);
    launch
        .args
        .extend(["--config".to_owned(), file.display().to_string()]);
    let server = Server::start(data.path(), &launch);
    assert_eq!(
        filenames(&server, "foo").await,
        json!([old.filename, young.filename])
    );

    std::fs::write(&file, "[policy]\nmin_release_age = \"3d\"\n").unwrap();
    server.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while filenames(&server, "foo").await != json!([old.filename]) {
        assert!(std::time::Instant::now() < deadline, "{}", server.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A file with an error leaves the policy in force, and the server up.
    std::fs::write(&file, "[policy]\nmin_release_age = \"soon\"\n").unwrap();
    server.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !server.logged("reload refused; nothing was changed") {
        assert!(std::time::Instant::now() < deadline, "{}", server.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(filenames(&server, "foo").await, json!([old.filename]));
}

/// `/policy/explain` (admin) shows every check for each file; `/health` and the UI count the
/// held files and the project page shows why each is held.
#[tokio::test]
async fn held_files_are_explained_counted_and_shown() {
    let (fake, old, young) = foo_upstream();
    let (_data, server) = start(
        &fake,
        &[
            ("PKGMIRROR__POLICY__MIN_RELEASE_AGE", "3d"),
            ("PKGMIRROR__POLICY__RULES", "deny pypi foo ==1.0; known bad"),
            ("PKGMIRROR__SERVER__ADMIN_TOKEN", "explain-token"),
        ],
    );
    assert_eq!(filenames(&server, "foo").await, json!([]));
    refused(&server, &format!("/simple/foo/{}", young.filename)).await;

    let url = server.url("/policy/explain?project=Foo&version=2.0");
    assert_eq!(
        client().get(&url).send().await.unwrap().status(),
        401,
        "an admin endpoint"
    );
    let explained: serde_json::Value = client()
        .get(&url)
        .bearer_auth("explain-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let files = explained["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{explained}");
    let file = &files[0];
    assert_eq!(file["filename"], young.filename.as_str());
    assert_eq!(file["served"], false);
    let outcomes: Vec<(&str, &str)> = file["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["check"].as_str().unwrap(), c["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("rule", "passed"),
            ("exclude_newer", "not set"),
            ("min_release_age", "held")
        ],
        "{explained}"
    );
    assert!(file["eligible_at"].is_string(), "{explained}");

    let health = get_json(&server.url("/health")).await;
    assert_eq!(health["policy"]["active"], true);
    assert_eq!(
        health["policy"]["held_back"],
        json!({"age": 1, "date": 0, "rule": 1, "unknown_upload_time": 0}),
        "{health}"
    );
    let home = get(&server.url("/"), "text/html").await.text().await.unwrap();
    assert!(home.contains("1 by age, 0 by date, 1 by a rule"), "{home}");
    let page = get(&server.url("/packages/pypi/foo"), "text/html")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("held back: held back by the policy rule"), "{page}");
    assert!(
        page.contains(&format!(
            "held back: uploaded {}",
            &young.upload_time.as_deref().unwrap()[..10]
        )),
        "{page}"
    );
    assert!(
        !page.contains(&format!(
            "<tr>\n<td><a class=\"download mono\" href=\"/simple/foo/{}",
            old.filename
        )),
        "{page}"
    );
}

/// With `hex.resign_key`, every registry file is signed by the mirror and lists no release (or
/// package) the policy holds back.
#[tokio::test]
async fn re_signed_hex_registry_files_leave_held_releases_out() {
    use pkgmirror::hex::{HexPublicKey, RegistryVerifier};
    let fake = FakeIndex::start();
    let repo = crate::support::hex_fixtures::standard();
    crate::support::hex_fixtures::serve(&fake, &repo);
    let data = temp_dir();
    let mut launch = Launch::with_hex(&fake.root_url(), "10m");
    launch
        .env(
            "PKGMIRROR__HEX__RESIGN_KEY",
            include_str!("../fixtures/hex/other_key.pem"),
        )
        .env(
            "PKGMIRROR__POLICY__RULES",
            "deny hex fixfoo ==1.1.0,deny hex fixbaz",
        );
    let server = Server::start(data.path(), &launch);
    let verifier = RegistryVerifier::new(
        HexPublicKey::from_pem(include_str!("../fixtures/hex/other_key.pub.pem")).unwrap(),
    );
    let file = async |path: &str| {
        get(&server.url(path), "*/*")
            .await
            .bytes()
            .await
            .unwrap()
            .to_vec()
    };

    let package = verifier
        .package("fixfoo", &file("/hex/packages/fixfoo").await)
        .unwrap();
    let versions: Vec<&str> = package.releases.iter().map(|r| r.version.as_str()).collect();
    assert_eq!(versions, ["1.0.0"]);
    let names = verifier.names(&file("/hex/names").await).unwrap();
    let names: Vec<&str> = names.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["fixbar", "fixfoo"]);
    let listed = verifier.versions(&file("/hex/versions").await).unwrap();
    let fixfoo = listed.packages.iter().find(|p| p.name == "fixfoo").unwrap();
    assert_eq!(fixfoo.versions, ["1.0.0"]);
    assert_eq!(fixfoo.retired, [0], "1.0.0 is retired upstream, and still is");
    assert!(listed.packages.iter().all(|p| p.name != "fixbaz"));
}
