//! pip, uv, poetry and pdm install a real dependency tree (`packages::tree`: wheels, an sdist to
//! build, a version excluded by `requires-python`) through the mirror; then the upstream is
//! stopped and each installs it again, into a fresh target with fresh caches, from the mirror's
//! cache alone.
//!
//! The tools come from the venv of `tests/run.sh`: `PKGMIRROR_TEST_PYTHON` names its python and
//! the tools sit next to it. Without that variable, `python3` from `PATH` and its `bin` directory
//! are used; a test whose tool is missing there is skipped (see `support::tools::require`).
//!
//! Each tool can reach nothing but the mirror (see `support::sandbox`): the environment is
//! emptied, `HOME`, the XDG directories, caches and tool configuration all live in a fresh temp
//! dir, the index is set on the command line or in the project, and any other host goes through
//! a proxy that is not there.

use crate::support::packages;
use crate::support::sandbox::{Client, install};
use crate::support::tools::require;
use crate::support::*;

/// The files an install of the tree downloads.
const NEEDED: [&str; 3] = [
    "app-3.1-py3-none-any.whl",
    "lib_a-1.0-py3-none-any.whl",
    "lib_b-0.5.2.tar.gz",
];

/// The whole story for one client: install through the mirror (each needed file fetched
/// upstream exactly once), stop the upstream, install again from the mirror alone.
async fn installs_through_the_mirror_then_from_its_cache(client: Client) {
    let Some(_) = require(client.tool()) else { return };
    let dists = packages::tree();
    let fake = FakeIndex::start();
    packages::serve(&fake, &dists);
    let data = temp_dir();
    let mut launch = Launch::with_upstreams(&[&fake.url()], "10m");
    launch.env("PKGMIRROR__PYPI__ALLOW_PRIVATE_UPSTREAMS", "true");
    let server = Server::start(data.path(), &launch);
    let index = server.url("/simple/");

    install(client, &index, &server).await;

    // Upstream requests per file: each file the install needs exactly once (however often the
    // client asked the mirror), any other at most once.
    let mut table = Vec::new();
    for dist in &dists {
        table.push((dist.path(), fake.hits_of(&dist.path())));
        if dist.metadata.is_some() {
            table.push((dist.metadata_path(), fake.hits_of(&dist.metadata_path())));
        }
    }
    let shown: Vec<String> = table.iter().map(|(p, n)| format!("{n} {p}")).collect();
    let shown = shown.join("\n");
    for (path, count) in &table {
        let needed = NEEDED.iter().any(|f| path.ends_with(&format!("/{f}")));
        assert!(
            if needed { *count == 1 } else { *count <= 1 },
            "{client:?}: upstream hits per file (needed ones must be 1, others at most 1):\n\
             {shown}\n=== pkgmirror log\n{}",
            server.logs()
        );
    }
    for project in ["app/", "lib-a/", "lib-b/"] {
        assert_eq!(fake.hits(project), 1, "{client:?}: {project}\n{}", server.logs());
    }

    // Upstream gone: a fresh install (fresh target, fresh client caches) still works.
    fake.stop();
    install(client, &index, &server).await;
}

#[tokio::test]
async fn pip_installs_through_the_mirror_then_from_its_cache() {
    installs_through_the_mirror_then_from_its_cache(Client::Pip).await;
}

#[tokio::test]
async fn uv_installs_through_the_mirror_then_from_its_cache() {
    installs_through_the_mirror_then_from_its_cache(Client::Uv).await;
}

#[tokio::test]
async fn poetry_installs_through_the_mirror_then_from_its_cache() {
    installs_through_the_mirror_then_from_its_cache(Client::Poetry).await;
}

#[tokio::test]
async fn pdm_installs_through_the_mirror_then_from_its_cache() {
    installs_through_the_mirror_then_from_its_cache(Client::Pdm).await;
}
