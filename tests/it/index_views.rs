//! Each upstream and hosted index on its own at `/indexes/{name}/simple/`, and `pypi.only_from`
//! keeping a name to one index in `/simple/`.

use serde_json::json;

use crate::hosted::publish;
use crate::support::packages::{self, Dist};
use crate::support::sandbox;
use crate::support::tools::{self, Tool};
use crate::support::*;

const JSON: &str = "application/vnd.pypi.simple.v1+json";

/// A server with `main` as the main upstream, `company` as the extra one named `company`, the
/// hosted index `internal`, and an upload token for it.
fn launch(
    data: &std::path::Path,
    main: &FakeIndex,
    company: &FakeIndex,
    only_from: &str,
) -> (String, Launch) {
    let token = token_command(
        data,
        &["create", "--name", "ci", "--scope", "upload:internal"],
        &[],
    );
    let mut launch = Launch::default();
    launch
        .env("PKGMIRROR__PYPI__INDEX_URL", &main.url())
        .env("PKGMIRROR__PYPI__EXTRA_INDEX_URLS", &company.url())
        .env("PKGMIRROR__PYPI__EXTRA_INDEX_NAMES", "company")
        .env("PKGMIRROR__PYPI__ALLOW_PRIVATE_UPSTREAMS", "true")
        .env("PKGMIRROR__PYPI__HOSTED", "internal")
        .env("PKGMIRROR__PYPI__READ_TIMEOUT", "2s");
    if !only_from.is_empty() {
        launch.env("PKGMIRROR__PYPI__ONLY_FROM", only_from);
    }
    (token, launch)
}

/// The file names a JSON page lists.
async fn filenames(server: &Server, path: &str) -> serde_json::Value {
    let page = get_json(&server.url(path)).await;
    let files = page["files"]
        .as_array()
        .unwrap_or_else(|| panic!("{path}: {page}"));
    files.iter().map(|f| f["filename"].clone()).collect()
}

fn names(dists: &[&Dist]) -> serde_json::Value {
    dists.iter().map(|d| json!(d.filename)).collect()
}

#[tokio::test]
async fn each_index_is_served_on_its_own() {
    let (main, company) = (FakeIndex::start(), FakeIndex::start());
    let public = packages::wheel("demo", "1.0", &[], None);
    let accel = packages::wheel("demo", "2.0", &[], None);
    packages::serve(&main, std::slice::from_ref(&public));
    packages::serve(&company, std::slice::from_ref(&accel));
    main.json("", &fixtures::json_list(&["demo", "main-only"]));
    company.json("", &fixtures::json_list(&["demo", "company-only"]));
    let data = temp_dir();
    let (uploader, launch) = launch(data.path(), &main, &company, "");
    let server = Server::start(data.path(), &launch);
    let hosted = packages::wheel("acme-utils", "1.0", &[], None);
    assert_eq!(publish(&server, &uploader, &hosted).await.status(), 200);

    // `/simple/` merges; each upstream alone lists its own files and names.
    assert_eq!(
        filenames(&server, "/simple/demo/").await,
        names(&[&public, &accel])
    );
    assert_eq!(
        filenames(&server, "/indexes/main/simple/demo/").await,
        names(&[&public])
    );
    assert_eq!(
        filenames(&server, "/indexes/company/simple/demo/").await,
        names(&[&accel])
    );
    let list = get_json(&server.url("/indexes/company/simple/")).await;
    assert_eq!(
        list["projects"],
        json!([{"name": "demo"}, {"name": "company-only"}]),
        "{list}"
    );

    // A file of one index, through that index's view: the bytes, then from the store.
    let path = format!("/indexes/company/simple/demo/{}", accel.filename);
    for expected in ["miss", "hit"] {
        let file = get(&server.url(&path), "*/*").await;
        assert_eq!(file.status(), 200, "{}", server.logs());
        assert_eq!(header(&file, "x-cache"), expected);
        assert_eq!(file.bytes().await.unwrap().as_ref(), accel.bytes.as_slice());
    }
    assert_eq!(company.hits_of(&accel.path()), 1);
    let elsewhere = get(
        &server.url(&format!("/indexes/main/simple/demo/{}", accel.filename)),
        "*/*",
    )
    .await;
    assert_eq!(elsewhere.status(), 404, "another index's view does not list it");

    // The hosted index alone: its projects only, never an upstream's.
    let hosted_list = get_json(&server.url("/indexes/internal/simple/")).await;
    assert_eq!(
        hosted_list["projects"],
        json!([{"name": "acme-utils"}]),
        "{hosted_list}"
    );
    assert_eq!(
        filenames(&server, "/indexes/internal/simple/acme-utils/").await,
        names(&[&hosted])
    );
    let hits = main.hits("demo/") + company.hits("demo/");
    let not_hosted = get(&server.url("/indexes/internal/simple/demo/"), JSON).await;
    assert_eq!(not_hosted.status(), 404);
    let body: serde_json::Value = not_hosted.json().await.unwrap();
    assert_eq!(
        body["message"], "project 'demo' is not on index 'internal'",
        "{body}"
    );
    assert_eq!(
        main.hits("demo/") + company.hits("demo/"),
        hits,
        "upstreams are not asked"
    );
    let wheel = get(
        &server.url(&format!(
            "/indexes/internal/simple/acme-utils/{}",
            hosted.filename
        )),
        "*/*",
    )
    .await;
    assert_eq!(wheel.bytes().await.unwrap().as_ref(), hosted.bytes.as_slice());

    // Names normalize under the view's own prefix; an unknown index is a 404 that says so.
    let moved = get(&server.url("/indexes/company/simple/Demo/"), JSON).await;
    assert_eq!(moved.status(), 301);
    assert_eq!(
        header(&moved, "location"),
        server.url("/indexes/company/simple/demo/")
    );
    let unknown = get(&server.url("/indexes/nowhere/simple/"), JSON).await;
    assert_eq!(unknown.status(), 404);
    let body: serde_json::Value = unknown.json().await.unwrap();
    assert_eq!(body["message"], "no upstream or hosted index is named 'nowhere'");

    // A real installer pointed at the hosted index alone.
    if tools::require(Tool::Pip).is_some() {
        let versions = sandbox::installed_versions(
            sandbox::Client::Pip,
            &server.url("/indexes/internal/simple/"),
            &["acme-utils"],
            &server,
        )
        .await;
        assert_eq!(
            versions.get("acme-utils").map(String::as_str),
            Some("1.0"),
            "{versions:?}"
        );
    }
}

#[tokio::test]
async fn only_from_keeps_matching_names_to_one_index() {
    let (main, company) = (FakeIndex::start(), FakeIndex::start());
    // The public index has a higher version of the company's name, and of a hosted-only name.
    packages::serve(
        &main,
        &[
            packages::wheel("acme-tools", "99.0", &[], None),
            packages::wheel("private-lib", "99.0", &[], None),
            packages::wheel("other", "1.0", &[], None),
        ],
    );
    let company_tools = packages::wheel("acme-tools", "1.0", &[], None);
    packages::serve(&company, std::slice::from_ref(&company_tools));
    let data = temp_dir();
    let (_, launch) = launch(
        data.path(),
        &main,
        &company,
        "Acme_* = company, private-lib = internal",
    );
    let server = Server::start(data.path(), &launch);

    assert_eq!(
        filenames(&server, "/simple/acme-tools/").await,
        names(&[&company_tools])
    );
    assert_eq!(
        main.hits("acme-tools/"),
        0,
        "the main index is not asked about acme-*"
    );

    // Kept to a hosted index that does not have it: a 404, and no upstream is asked.
    let refused = get(&server.url("/simple/private-lib/"), JSON).await;
    assert_eq!(refused.status(), 404);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("served only from index 'internal'"),
        "{body}"
    );
    assert_eq!(main.hits("private-lib/") + company.hits("private-lib/"), 0);

    // A name no rule matches merges as before.
    assert_eq!(get(&server.url("/simple/other/"), JSON).await.status(), 200);
    assert_eq!(company.hits("other/"), 1);
}
