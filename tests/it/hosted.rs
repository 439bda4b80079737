//! Hosted indexes: uploads through the legacy upload API, as twine sends them (multipart,
//! `:action=file_upload`, the token as the Basic password of `__token__`).

use reqwest::multipart::{Form, Part};

use crate::support::packages::{self, Dist};
use crate::support::s3_server::{S3Server, unique_bucket};
use crate::support::sandbox::{self, Sandbox};
use crate::support::tools::{self, Tool};
use crate::support::*;

/// A launch serving the hosted index `internal` (beside `upstream`, if any) with an upload token
/// for it made in `data`.
pub(crate) fn hosted_launch(data: &std::path::Path, upstream: Option<&FakeIndex>) -> (String, Launch) {
    let token = token_command(
        data,
        &["create", "--name", "ci", "--scope", "upload:internal"],
        &[],
    );
    let upstreams: Vec<String> = upstream.iter().map(|fake| fake.url()).collect();
    let upstreams: Vec<&str> = upstreams.iter().map(String::as_str).collect();
    let mut launch = Launch::with_upstreams(&upstreams, "10m");
    launch
        .env("PKGMIRROR__PYPI__ALLOW_PRIVATE_UPSTREAMS", "true")
        .env("PKGMIRROR__PYPI__HOSTED", "internal");
    (token, launch)
}

/// A server as [`hosted_launch`] makes it, on a fresh data dir; with the upload token.
fn hosted_server(upstream: Option<&FakeIndex>) -> (tempfile::TempDir, String, Server) {
    let data = temp_dir();
    let (token, launch) = hosted_launch(data.path(), upstream);
    let server = Server::start(data.path(), &launch);
    (data, token, server)
}

/// The record of `acme-utils` in the index `internal`, read from the data dir.
fn acme_record(data: &std::path::Path) -> serde_json::Value {
    let path = data.join("records/hosted/pypi/internal/acme-utils");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Uploads `dist` to `internal` as twine would.
pub(crate) async fn publish(server: &Server, token: &str, dist: &Dist) -> reqwest::Response {
    client()
        .post(server.url("/indexes/internal/"))
        .multipart(twine_form(dist, &dist.project, dist.bytes.clone(), &dist.sha256))
        .basic_auth("__token__", Some(token))
        .send()
        .await
        .unwrap()
}

/// The form twine sends for `dist` (the fields pkgmirror reads, and one it ignores).
fn twine_form(dist: &Dist, name: &str, bytes: Vec<u8>, sha256: &str) -> Form {
    use md5::Digest as _;
    Form::new()
        .text(":action", "file_upload")
        .text("protocol_version", "1")
        .text("metadata_version", "2.1")
        .text("name", name.to_owned())
        .text("version", dist.version.clone())
        .text(
            "filetype",
            if dist.filename.ends_with(".whl") {
                "bdist_wheel"
            } else {
                "sdist"
            },
        )
        .text("pyversion", "py3")
        .text("description", "x".repeat(100_000))
        .text("sha256_digest", sha256.to_owned())
        .text("md5_digest", hex::encode(md5::Md5::digest(&bytes)))
        .part("content", Part::bytes(bytes).file_name(dist.filename.clone()))
}

#[tokio::test]
async fn uploads_are_checked_kept_once_and_immutable() {
    let data = temp_dir();
    let (uploader, launch) = hosted_launch(data.path(), None);
    let reader = token_command(
        data.path(),
        &["create", "--name", "reader", "--scope", "read"],
        &[],
    );
    let server = Server::start(data.path(), &launch);
    let http = client();
    let url = server.url("/indexes/internal/");
    let wheel = packages::wheel("acme-utils", "1.0", &[], Some(">=3.8"));
    let post = |form: Form, token: Option<&str>| {
        let request = http.post(&url).multipart(form);
        match token {
            Some(token) => request.basic_auth("__token__", Some(token)),
            None => request,
        }
        .send()
    };
    let upload = |token: Option<&str>| {
        post(
            twine_form(&wheel, "acme-utils", wheel.bytes.clone(), &wheel.sha256),
            token,
        )
    };

    // Without a token, or with one that does not grant upload:internal: nothing is stored.
    assert_eq!(upload(None).await.unwrap().status(), 401);
    assert_eq!(upload(Some(&reader)).await.unwrap().status(), 403);
    let unknown = http.post(server.url("/indexes/other/")).multipart(twine_form(
        &wheel,
        "acme-utils",
        wheel.bytes.clone(),
        &wheel.sha256,
    ));
    assert_eq!(
        unknown
            .basic_auth("__token__", Some(&uploader))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert!(
        !data.path().join("records/hosted").exists(),
        "a refused upload leaves no record"
    );

    let stored = upload(Some(&uploader))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.logs()));
    assert_eq!(stored.status(), 200, "{}", stored.text().await.unwrap());
    let record = acme_record(data.path());
    let file = &record["files"][0];
    assert_eq!(record["name"], "acme-utils");
    assert_eq!(file["filename"], wheel.filename);
    assert_eq!(file["sha256"], wheel.sha256);
    assert_eq!(file["size"], wheel.bytes.len());
    assert_eq!(file["requires_python"], ">=3.8", "read from the wheel's METADATA");
    assert_eq!(file["uploader"], "ci");
    let metadata_sha = file["metadata_sha256"].as_str().unwrap();
    assert_eq!(
        metadata_sha,
        fixtures::sha256_hex(wheel.metadata.as_ref().unwrap())
    );
    assert!(blob_path(data.path(), &wheel.sha256).exists());
    assert!(blob_path(data.path(), metadata_sha).exists());

    // The same bytes again succeed (twine --skip-existing); other bytes under the name are 409.
    assert_eq!(upload(Some(&uploader)).await.unwrap().status(), 200);
    let mut other = wheel.bytes.clone();
    other.extend_from_slice(b"trailing");
    let other_sha = fixtures::sha256_hex(&other);
    let conflict = post(
        twine_form(&wheel, "acme-utils", other, &other_sha),
        Some(&uploader),
    )
    .await
    .unwrap();
    assert_eq!(conflict.status(), 409);
    assert!(
        !blob_path(data.path(), &other_sha).exists(),
        "the refused bytes are not kept"
    );
    let after = acme_record(data.path());
    assert_eq!(after["files"].as_array().unwrap().len(), 1);

    // Bad uploads: a digest that does not match, a file of another project, a broken wheel.
    let lying = post(
        twine_form(&wheel, "acme-utils", wheel.bytes.clone(), &"0".repeat(64)),
        Some(&uploader),
    )
    .await
    .unwrap();
    assert_eq!(lying.status(), 400);
    assert!(lying.text().await.unwrap().contains("sha256_digest"));
    let renamed = post(
        twine_form(&wheel, "someone-else", wheel.bytes.clone(), &wheel.sha256),
        Some(&uploader),
    )
    .await
    .unwrap();
    assert_eq!(renamed.status(), 400);
    let broken = packages::wheel("acme-utils", "2.0", &[], None);
    let junk = b"not a zip".to_vec();
    let junk_sha = fixtures::sha256_hex(&junk);
    let broken = post(
        twine_form(&broken, "acme-utils", junk, &junk_sha),
        Some(&uploader),
    )
    .await
    .unwrap();
    assert_eq!(broken.status(), 400);
    assert!(broken.text().await.unwrap().contains("not a valid wheel"));

    // An sdist of the same project joins the record; everything survives a restart.
    let sdist = packages::sdist("acme-utils", "1.0", &[]);
    let sdist_upload = post(
        twine_form(&sdist, "acme-utils", sdist.bytes.clone(), &sdist.sha256),
        Some(&uploader),
    )
    .await
    .unwrap();
    assert_eq!(sdist_upload.status(), 200);
    let (status, _) = server.terminate();
    assert!(status.success());
    let server = Server::start(data.path(), &launch);
    assert_eq!(
        http.post(server.url("/indexes/internal"))
            .multipart(twine_form(
                &sdist,
                "acme-utils",
                sdist.bytes.clone(),
                &sdist.sha256
            ))
            .basic_auth("__token__", Some(&uploader))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "the token and the record outlive the restart"
    );
    let record = acme_record(data.path());
    assert_eq!(record["files"].as_array().unwrap().len(), 2);
}

/// twine and `uv publish`, as a team's CI runs them, against a hosted index.
#[tokio::test]
async fn twine_and_uv_publish_to_a_hosted_index() {
    if !tools::require_all(&[Tool::Twine, Tool::Uv]) {
        return;
    }
    let (data, token, server) = hosted_server(None);
    let url = server.url("/indexes/internal/");
    let mut sandbox = Sandbox::new();
    let wheel = packages::wheel("acme-utils", "1.0", &[], Some(">=3.8"));
    let sdist = packages::sdist("acme-utils", "1.0", &[]);
    for dist in [&wheel, &sdist] {
        std::fs::write(sandbox.path(&dist.filename), &dist.bytes).unwrap();
    }
    let twine = |sandbox: &Sandbox, file: &str| {
        let mut cmd = sandbox.command(tools::path(Tool::Twine));
        cmd.args([
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            &url,
        ])
        .args(["--username", "__token__", "--password", &token])
        .arg(sandbox.path(file));
        cmd
    };
    sandbox.must(twine(&sandbox, &wheel.filename), &server).await;
    // Again, same bytes: accepted, as twine --skip-existing expects of an index.
    sandbox.must(twine(&sandbox, &wheel.filename), &server).await;

    let mut uv = sandbox.command(tools::path(Tool::Uv));
    uv.args(["publish", "--trusted-publishing", "never", "--publish-url", &url])
        .args(["--username", "__token__", "--password", &token])
        .arg(sandbox.path(&sdist.filename));
    sandbox.must(uv, &server).await;

    let record = acme_record(data.path());
    let files: Vec<(&str, &str)> = record["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["filename"].as_str().unwrap(), f["sha256"].as_str().unwrap()))
        .collect();
    assert_eq!(
        files,
        [
            (wheel.filename.as_str(), wheel.sha256.as_str()),
            (sdist.filename.as_str(), sdist.sha256.as_str())
        ]
    );

    // Other bytes under a published name: twine fails with the mirror's 409.
    let mut changed = wheel.bytes.clone();
    changed.extend_from_slice(b"changed");
    std::fs::write(sandbox.path(&wheel.filename), changed).unwrap();
    let run = sandbox::run(twine(&sandbox, &wheel.filename)).await;
    assert!(!run.ok(), "{}", run.report());
    assert!(
        run.stdout.contains("409") || run.stderr.contains("409"),
        "{}",
        run.report()
    );
}

/// The dependency-confusion rule: a project a hosted index has is served from it alone, whatever
/// an upstream lists under the same name, and every client installs the hosted version.
#[tokio::test]
async fn a_hosted_project_is_never_mixed_with_an_upstreams_files() {
    let fake = FakeIndex::start();
    let public = packages::wheel("acme-utils", "99.0", &[], None);
    let mut dists = packages::tree();
    dists.push(packages::wheel("acme-utils", "99.0", &[], None));
    packages::serve(&fake, &dists);
    let (_data, uploader, server) = hosted_server(Some(&fake));

    // Before the upload, the public project is mirrored as any other.
    let before = get_json(&server.url("/simple/acme-utils/")).await;
    assert_eq!(before["versions"], serde_json::json!(["99.0"]));

    let wheel = packages::wheel("acme-utils", "1.0", &[], Some(">=3.8"));
    let stored = publish(&server, &uploader, &wheel).await;
    assert_eq!(stored.status(), 200);

    // At once on this node: the hosted file alone, with its hashes, size, upload time and metadata.
    let page = get_json(&server.url("/simple/acme-utils/")).await;
    assert_eq!(page["versions"], serde_json::json!(["1.0"]), "{page}");
    let files = page["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{page}");
    assert_eq!(files[0]["filename"], wheel.filename);
    assert_eq!(files[0]["hashes"]["sha256"], wheel.sha256);
    assert_eq!(files[0]["size"], wheel.bytes.len());
    assert_eq!(files[0]["requires-python"], ">=3.8");
    assert!(files[0]["upload-time"].as_str().unwrap().ends_with('Z'));
    let metadata_sha = fixtures::sha256_hex(wheel.metadata.as_ref().unwrap());
    assert_eq!(files[0]["core-metadata"]["sha256"], metadata_sha);
    let html = get(&server.url("/simple/acme-utils/"), "text/html")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(&wheel.filename) && !html.contains(&public.filename),
        "{html}"
    );
    let hits = fake.hits("acme-utils/");

    // The file and its metadata come from the store.
    let file = get(
        &server.url(&format!("/simple/acme-utils/{}", wheel.filename)),
        "*/*",
    )
    .await;
    assert_eq!(file.status(), 200);
    assert_eq!(file.bytes().await.unwrap().as_ref(), wheel.bytes.as_slice());
    let metadata = get(
        &server.url(&format!("/simple/acme-utils/{}.metadata", wheel.filename)),
        "*/*",
    )
    .await;
    assert_eq!(
        metadata.bytes().await.unwrap().as_ref(),
        wheel.metadata.as_deref().unwrap()
    );
    let public_file = get(
        &server.url(&format!("/simple/acme-utils/{}", public.filename)),
        "*/*",
    )
    .await;
    assert_eq!(
        public_file.status(),
        404,
        "the public file is not reachable through the hosted name"
    );

    // Every client installs the hosted version, and the upstream is not asked about the name.
    sandbox::every_client_installs(&server.url("/simple/"), "acme-utils", "1.0", &server).await;
    assert_eq!(
        fake.hits("acme-utils/"),
        hits,
        "hosted pages never ask the upstream"
    );
    // The list has the upstream's projects and the hosted ones, each name once.
    let list = get_json(&server.url("/simple/")).await;
    let mut names: Vec<&str> = list["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["acme-utils", "app", "lib-a", "lib-b"], "{list}");
    // A project no hosted index has still comes from the upstream.
    assert_eq!(
        get(&server.url("/simple/app/"), "application/vnd.pypi.simple.v1+json")
            .await
            .status(),
        200
    );
}

/// Two nodes on one bucket: the token and the hosted record live in the bucket, so a file uploaded
/// through node A is listed and installed through node B, which never saw the upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_through_one_node_installs_through_another_on_the_bucket() {
    if !tools::require_all(&[Tool::Moto, Tool::Pip]) {
        return;
    }
    let s3 = S3Server::start();
    let bucket = unique_bucket();
    s3.create_bucket(&bucket).await;
    let fake = FakeIndex::start();
    packages::serve(&fake, &[packages::wheel("acme-utils", "99.0", &[], None)]);
    let mut env = s3.env(&bucket);
    env.push(("PKGMIRROR__STORAGE__BACKEND".into(), "s3".into()));
    let (dir_a, dir_b) = (temp_dir(), temp_dir());
    let token = token_command(
        dir_a.path(),
        &["create", "--name", "ci", "--scope", "upload:internal"],
        &env,
    );
    let node = |dir: &std::path::Path, backend: &str| {
        let mut launch = Launch::with_upstreams(&[&fake.url()], "10m");
        launch
            .env("PKGMIRROR__PYPI__ALLOW_PRIVATE_UPSTREAMS", "true")
            .env("PKGMIRROR__PYPI__HOSTED", "internal")
            .env("PKGMIRROR__STORAGE__BACKEND", backend);
        for (key, value) in s3.env(&bucket) {
            launch.env(&key, &value);
        }
        Server::start(dir, &launch)
    };
    let node_a = node(dir_a.path(), "s3");
    let node_b = node(dir_b.path(), "tiered");

    let wheel = packages::wheel("acme-utils", "1.0", &[], None);
    let stored = publish(&node_a, &token, &wheel).await;
    assert_eq!(stored.status(), 200, "{}", node_a.logs());
    let keys = s3.keys(&bucket).await;
    assert!(
        keys.iter()
            .any(|k| k == "records/hosted/pypi/internal/acme-utils"),
        "{keys:?}"
    );
    assert!(
        !dir_a.path().join("records").exists(),
        "the bucket holds the records, not the node"
    );

    let page = get_json(&node_b.url("/simple/acme-utils/")).await;
    assert_eq!(page["versions"], serde_json::json!(["1.0"]), "{page}");
    let versions = sandbox::installed_versions(
        sandbox::Client::Pip,
        &node_b.url("/simple/"),
        &["acme-utils"],
        &node_b,
    )
    .await;
    assert_eq!(versions.get("acme-utils").map(String::as_str), Some("1.0"));
    assert_eq!(
        fake.hits("acme-utils/"),
        0,
        "neither node asked the upstream about a hosted name"
    );
}

/// `pkgmirror hosted yank|unyank|delete`: a yanked file is skipped by `pip install name` and
/// installed by `pip install name==version` (PEP 592); a deleted one is gone from the page.
#[tokio::test]
async fn yanked_and_deleted_hosted_files_as_pip_sees_them() {
    let (data, uploader, server) = hosted_server(None);
    let http = client();
    let (one, two) = (
        packages::wheel("acme-utils", "1.0", &[], None),
        packages::wheel("acme-utils", "2.0", &[], None),
    );
    for wheel in [&one, &two] {
        let stored = publish(&server, &uploader, wheel).await;
        assert_eq!(stored.status(), 200);
    }
    let hosted = |args: &[&str]| {
        let output = pkgmirror_command(data.path())
            .env("PKGMIRROR__PYPI__HOSTED", "internal")
            .arg("hosted")
            .args(args)
            .args(["--index", "internal", "acme-utils"])
            .arg(&two.filename)
            .arg("--data-dir")
            .arg(data.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    // The CLI's change shows at the page's next rebuild; the admin endpoint makes that now.
    let rebuilt = async || {
        let forgot = http.delete(server.url("/cache/acme-utils")).send().await.unwrap();
        assert_eq!(forgot.status(), 200);
        get_json(&server.url("/simple/acme-utils/")).await
    };

    // With no upstream, the project list is the hosted projects.
    let list = get_json(&server.url("/simple/")).await;
    let names: Vec<&str> = list["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme-utils"], "{list}");

    hosted(&["yank", "--reason", "broken build"]);
    let page = rebuilt().await;
    assert_eq!(page["files"][1]["filename"], two.filename);
    assert_eq!(page["files"][1]["yanked"], "broken build");
    let pip_installs = async |requirement: &str| {
        let versions = sandbox::installed_versions(
            sandbox::Client::Pip,
            &server.url("/simple/"),
            &[requirement],
            &server,
        )
        .await;
        versions["acme-utils"].clone()
    };
    if tools::require(Tool::Pip).is_some() {
        assert_eq!(
            pip_installs("acme-utils").await,
            "1.0",
            "a yanked file is skipped"
        );
        assert_eq!(
            pip_installs("acme-utils==2.0").await,
            "2.0",
            "unless pinned exactly"
        );
    }

    hosted(&["unyank"]);
    assert_eq!(rebuilt().await["files"][1]["yanked"], false);
    hosted(&["delete"]);
    let page = rebuilt().await;
    assert_eq!(page["versions"], serde_json::json!(["1.0"]), "{page}");
    let gone = get(
        &server.url(&format!("/simple/acme-utils/{}", two.filename)),
        "*/*",
    )
    .await;
    assert_eq!(gone.status(), 404);

    let actions: Vec<String> = stored_admin_log(data.path())
        .into_iter()
        .map(|(action, _)| action)
        .filter(|action| action.starts_with("hosted-"))
        .collect();
    assert_eq!(actions, ["hosted-yank", "hosted-unyank", "hosted-delete"]);
}

/// `poetry publish` and `pdm publish`, each from a project whose dist/ holds the built files.
#[tokio::test]
async fn poetry_and_pdm_publish_to_a_hosted_index() {
    if !tools::require_all(&[Tool::Poetry, Tool::Pdm]) {
        return;
    }
    let (_data, token, server) = hosted_server(None);
    let url = server.url("/indexes/internal/");
    let mut sandbox = Sandbox::new();
    // One project per tool, each with its wheel built already in dist/.
    let project = |sandbox: &Sandbox, name: &str, dist: &Dist| {
        let dir = sandbox.path(name);
        std::fs::create_dir_all(dir.join("dist")).unwrap();
        std::fs::write(
            dir.join("pyproject.toml"),
            format!(
                "[project]\nname = \"{}\"\nversion = \"{}\"\n",
                dist.project, dist.version
            ),
        )
        .unwrap();
        std::fs::write(dir.join("dist").join(&dist.filename), &dist.bytes).unwrap();
        dir
    };
    let by_poetry = packages::wheel("team-poetry", "1.0", &[], None);
    let by_pdm = packages::wheel("team-pdm", "1.0", &[], None);

    let dir = project(&sandbox, "poetry-project", &by_poetry);
    let mut config = sandbox.command(tools::path(Tool::Poetry));
    config
        .args(["config", "repositories.internal", &url])
        .current_dir(&dir);
    sandbox.must(config, &server).await;
    let mut poetry = sandbox.command(tools::path(Tool::Poetry));
    poetry
        .args([
            "publish",
            "--repository",
            "internal",
            "--username",
            "__token__",
            "--password",
            &token,
        ])
        .current_dir(&dir);
    sandbox.must(poetry, &server).await;

    let dir = project(&sandbox, "pdm-project", &by_pdm);
    let mut pdm = sandbox.command(tools::path(Tool::Pdm));
    pdm.args([
        "publish",
        "--no-build",
        "--repository",
        &url,
        "--username",
        "__token__",
        "--password",
        &token,
    ])
    .current_dir(&dir);
    sandbox.must(pdm, &server).await;

    for dist in [&by_poetry, &by_pdm] {
        let page = get_json(&server.url(&format!("/simple/{}/", dist.project))).await;
        assert_eq!(page["files"][0]["filename"], dist.filename, "{page}");
        assert_eq!(page["files"][0]["hashes"]["sha256"], dist.sha256);
    }
}

/// The web UI marks hosted projects and names their uploaders; `/admin` makes and revokes tokens
/// (the token shown once, never logged) and yanks and deletes hosted files.
#[tokio::test]
async fn hosted_packages_and_tokens_in_the_web_ui() {
    use crate::support::web::{self, Browser, act, sign_in, text_of};
    let data = temp_dir();
    let (uploader, mut launch) = hosted_launch(data.path(), None);
    launch.env("PKGMIRROR__SERVER__ADMIN_TOKEN", web::TOKEN);
    let server = Server::start(data.path(), &launch);
    let wheel = packages::wheel("acme-utils", "1.0", &[], None);
    assert_eq!(publish(&server, &uploader, &wheel).await.status(), 200);

    // Known to the UI at once, badged, with its uploader.
    let mut b = Browser::new(&server);
    let list = b.get("/packages").await;
    let row = web::row_linking(&list.body, "acme-utils");
    assert!(row.contains("hosted: internal"), "{row}");
    let project = b.get("/packages/pypi/acme-utils").await;
    assert!(project.body.contains("id=\"hosted-note\""), "{}", project.body);
    assert!(project.body.contains("by ci"), "{}", project.body);

    let csrf = sign_in(&mut b).await;
    let fields = [("name", "reader"), ("scopes", "read"), ("expires", "30d")];
    let (page, row) = act(&mut b, &csrf, "token-create", &fields, "/admin").await;
    assert_eq!(row.2, "ok: created with scopes read");
    let secret = text_of(&page.body, "<code class=\"mono\"");
    assert!(secret.starts_with("pkgm_"), "{}", page.body);
    assert!(web::admin_log(&page.body).iter().all(|r| !r.2.contains(&secret)));
    assert!(
        page.body
            .contains("<td class=\"mono\">reader</td><td>active</td>"),
        "{}",
        page.body
    );
    assert!(!b.get("/admin").await.body.contains(&secret), "shown once");
    let upload_with = async |token: &str| publish(&server, token, &wheel).await.status();
    assert_eq!(upload_with(&secret).await, 403, "a valid token without the scope");
    let (page, row) = act(&mut b, &csrf, "token-revoke", &[("name", "reader")], "/admin").await;
    assert_eq!(row.2, "ok: revoked 1");
    assert!(
        page.body
            .contains("<td class=\"mono\">reader</td><td>revoked</td>"),
        "{}",
        page.body
    );
    assert_eq!(upload_with(&secret).await, 401, "a revoked token is no token");

    // Yank with a reason, then delete; a file the index does not have is refused.
    let file = [
        ("index", "internal"),
        ("project", "acme-utils"),
        ("filename", wheel.filename.as_str()),
        ("reason", "broken build"),
    ];
    let back = "/admin?project=acme-utils";
    let (_, row) = act(&mut b, &csrf, "hosted-yank", &file, back).await;
    assert_eq!(
        row,
        (
            "hosted-yank".into(),
            format!("internal/acme-utils/{}", wheel.filename),
            "ok".into()
        )
    );
    let page = get_json(&server.url("/simple/acme-utils/")).await;
    assert_eq!(page["files"][0]["yanked"], "broken build", "{page}");
    let missing = [
        ("index", "internal"),
        ("project", "acme-utils"),
        ("filename", "acme_utils-9.0.tar.gz"),
    ];
    let (page, row) = act(&mut b, &csrf, "hosted-delete", &missing, back).await;
    assert!(row.2.starts_with("refused: the hosted index"), "{row:?}");
    assert!(page.body.contains("class=\"banner bad\""));
    act(&mut b, &csrf, "hosted-delete", &file[..3], back).await;
    let page = get_json(&server.url("/simple/acme-utils/")).await;
    assert_eq!(page["files"], serde_json::json!([]), "{page}");
}
