//! `pkgmirror export` and `import`: node A's cache, carried in a bundle to a fresh node B whose
//! upstreams are gone, serves the same installs; a bundle with a corrupt blob is refused, naming
//! it, and leaves nothing behind.

use std::path::Path;

use crate::support::hex_fixtures::{self, standard};
use crate::support::packages;
use crate::support::rebar3::Rebar3User;
use crate::support::sandbox::{Client, install};
use crate::support::tools::{Tool, require_all};
use crate::support::*;

fn node(fake: &FakeIndex, hex: &FakeIndex) -> Launch {
    let mut launch = Launch::with_upstreams(&[&fake.url()], "10m");
    launch
        .hex(hex.root_url().trim_end_matches('/'), "10m")
        .env("PKGMIRROR__PYPI__ALLOW_PRIVATE_UPSTREAMS", "true");
    launch
}

/// `pkgmirror {command} ARGS --data-dir DIR`: (exit code, stdout + stderr).
fn bundle_command(dir: &Path, command: &str, args: &[&str]) -> (i32, String) {
    let data_dir = dir.to_str().unwrap();
    let args: Vec<&str> = [command]
        .into_iter()
        .chain(args.iter().copied())
        .chain(["--data-dir", data_dir])
        .collect();
    let (code, stdout, stderr) = run_pkgmirror(dir, &args, &[]);
    (code, format!("{stdout}{stderr}"))
}

#[tokio::test]
async fn a_bundle_carries_a_cache_to_a_node_without_upstreams() {
    if !require_all(&[Tool::Pip, Tool::Uv, Tool::Rebar3]) {
        return;
    }
    let dists = packages::tree();
    let fake = FakeIndex::start();
    packages::serve(&fake, &dists);
    let hex = FakeIndex::start();
    hex_fixtures::serve(&hex, &standard());

    // Node A caches what pip, uv and rebar3 install through it, then stops.
    let data_a = temp_dir();
    let a = Server::start(data_a.path(), &node(&fake, &hex));
    install(Client::Pip, &a.url("/simple/"), &a).await;
    install(Client::Uv, &a.url("/simple/"), &a).await;
    let mut rebar = Rebar3User::new();
    let (run, _) = rebar.compile(&a.url("/hex")).await;
    assert!(run.ok(), "rebar3 through A\n{}\n{}", rebar.transcript(), a.logs());
    let (status, logs) = a.terminate();
    assert!(status.success(), "{logs}");

    let exports = temp_dir();
    let bundle = exports.path().join("a.tar");
    let (code, out) = bundle_command(data_a.path(), "export", &["--out", bundle.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("exported 5 projects"),
        "app, lib-a, lib-b, fixbar, fixfoo:\n{out}"
    );
    // A bundle of one project carries that project alone.
    let one = exports.path().join("one.tar");
    let (code, out) = bundle_command(
        data_a.path(),
        "export",
        &["--out", one.to_str().unwrap(), "--project", "Lib_A"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("exported 1 projects"), "{out}");
    // Nothing fetched or stored lately: an incremental bundle since tomorrow is empty.
    let tomorrow = exports.path().join("none.tar");
    let (code, out) = bundle_command(
        data_a.path(),
        "export",
        &["--out", tomorrow.to_str().unwrap(), "--since", "2999-01-01"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("exported 0 projects") && out.contains(" 0 blobs"),
        "{out}"
    );

    // Every upstream gone; node B (configured as A was) is made from the bundle alone.
    let launch_b = node(&fake, &hex);
    fake.stop();
    hex.stop();
    let data_b = temp_dir();
    let (code, out) = bundle_command(data_b.path(), "import", &[bundle.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("imported 5 projects"), "{out}");
    let b = Server::start(data_b.path(), &launch_b);
    install(Client::Pip, &b.url("/simple/"), &b).await;
    install(Client::Uv, &b.url("/simple/"), &b).await;
    let mut rebar = Rebar3User::new();
    let (run, project) = rebar.compile(&b.url("/hex")).await;
    assert!(run.ok(), "rebar3 through B\n{}\n{}", rebar.transcript(), b.logs());
    assert!(
        project
            .join("_build/default/lib/fixfoo/ebin/fixfoo.beam")
            .is_file()
    );

    // One flipped byte in lib_b's sdist: the import is refused naming it, and stores nothing.
    let sdist = dists.iter().find(|d| d.filename == "lib_b-0.5.2.tar.gz").unwrap();
    let mut bytes = std::fs::read(&bundle).unwrap();
    let at = bytes
        .windows(sdist.bytes.len())
        .position(|w| w == sdist.bytes.as_slice())
        .expect("the sdist's bytes are in the bundle");
    bytes[at + sdist.bytes.len() / 2] ^= 0x01;
    let corrupt = exports.path().join("corrupt.tar");
    std::fs::write(&corrupt, bytes).unwrap();
    let data_c = temp_dir();
    let (code, out) = bundle_command(data_c.path(), "import", &[corrupt.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("blob {} (lib_b-0.5.2.tar.gz)", sdist.sha256)) && out.contains("corrupt"),
        "the refusal names the blob and its file:\n{out}"
    );
    assert_eq!(
        blob_files(&data_c, "sha256"),
        0,
        "a refused bundle leaves no blob"
    );
}
