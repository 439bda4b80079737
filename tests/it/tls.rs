//! HTTPS: pip, uv and curl over TLS with a test CA, HTTP/2 by ALPN, the certificate swapped by
//! SIGHUP and a bad one refused without harm.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::packages;
use crate::support::sandbox::{Client, Sandbox, install_in};
use crate::support::tools::{self, Tool};
use crate::support::*;

/// A test CA in `dir`: its certificate and key.
fn test_ca(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=pkgmirror test CA",
        "-keyout",
        &path(&key),
        "-out",
        &path(&cert),
    ]);
    (cert, key)
}

/// A server certificate for 127.0.0.1 and localhost named `cn`, signed by the CA, written to
/// `cert` and `key`.
fn server_certificate(ca: &(PathBuf, PathBuf), cn: &str, cert: &Path, key: &Path) {
    let dir = cert.parent().unwrap();
    let (csr, ext) = (dir.join(format!("{cn}.csr")), dir.join(format!("{cn}.ext")));
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        &format!("/CN={cn}"),
        "-keyout",
        &path(key),
        "-out",
        &path(&csr),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &path(&csr),
        "-CA",
        &path(&ca.0),
        "-CAkey",
        &path(&ca.1),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &path(&ext),
        "-out",
        &path(cert),
    ]);
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn openssl(args: &[&str]) {
    let out = Command::new(tools::path(Tool::System("openssl")))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The subject CN of the certificate a new connection to `addr` is shown.
fn presented_cn(addr: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {addr} -servername localhost </dev/null 2>/dev/null \
             | openssl x509 -noout -subject"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_install_over_https_with_http2_and_sighup_swaps_the_certificate() {
    if !tools::require_all(&[Tool::System("openssl"), Tool::System("curl"), Tool::Pip, Tool::Uv]) {
        return;
    }
    let certs = temp_dir();
    let ca = test_ca(certs.path());
    let (cert, key) = (certs.path().join("server.pem"), certs.path().join("server.key"));
    server_certificate(&ca, "first", &cert, &key);

    let fake = FakeIndex::start();
    packages::serve(&fake, &packages::tree());
    let dir = temp_dir();
    let mut launch = Launch::with_upstreams(&[&fake.url()], "10m");
    launch
        .env("PKGMIRROR__PYPI__ALLOW_PRIVATE_UPSTREAMS", "true")
        .env("PKGMIRROR__SERVER__TLS_CERT", &path(&cert))
        .env("PKGMIRROR__SERVER__TLS_KEY", &path(&key));
    let server = Server::start(dir.path(), &launch);
    let index = server.url("/simple/");
    assert!(index.starts_with("https://127.0.0.1:"), "{index}");
    let addr = index
        .trim_start_matches("https://")
        .trim_end_matches("/simple/")
        .to_owned();

    // A Rust client trusting the test CA gets HTTP/2.
    let ca_pem = std::fs::read(&ca.0).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).unwrap())
        .build()
        .unwrap();
    let response = https.get(server.url("/simple/app/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    // curl negotiates HTTP/2 and the access log says so.
    let curl = Command::new(tools::path(Tool::System("curl")))
        .args([
            "-sS",
            "--http2",
            "--cacert",
            &path(&ca.0),
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
        ])
        .arg(server.url("/simple/"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&curl.stdout),
        "2",
        "{}",
        String::from_utf8_lossy(&curl.stderr)
    );
    assert!(server.logged("version=\"HTTP/2\""), "{}", server.logs());

    // pip and uv install the tree over HTTPS, trusting the test CA.
    for client in [Client::Pip, Client::Uv] {
        let mut sandbox = Sandbox::new();
        sandbox.trust(&ca.0);
        let installed = install_in(&mut sandbox, client, &index, &["app"], &server).await;
        sandbox
            .check_installed(&installed.python, installed.pythonpath.as_deref(), &server)
            .await;
    }
    // A client that does not trust the CA is refused at the handshake, which the log names.
    let untrusted = Command::new(tools::path(Tool::System("curl")))
        .args(["-sS", "-o", "/dev/null"])
        .arg(server.url("/simple/"))
        .output()
        .unwrap();
    assert!(!untrusted.status.success());
    assert!(server.logged("TLS handshake failed"), "{}", server.logs());

    // SIGHUP reads the files again: new connections get the new certificate, and a connection
    // opened before goes on working.
    assert_eq!(presented_cn(&addr), "subject=CN = first");
    server_certificate(&ca, "second", &cert, &key);
    server.signal("HUP");
    assert!(server.logged("TLS certificate reloaded"), "{}", server.logs());
    assert_eq!(presented_cn(&addr), "subject=CN = second");
    let again = https.get(server.url("/simple/app/")).send().await.unwrap();
    assert_eq!(again.status(), 200);

    // A broken file changes nothing: the certificate in use stays and is still served.
    std::fs::write(&cert, "not a certificate").unwrap();
    server.signal("HUP");
    assert!(
        server.logged("reload refused; nothing was changed"),
        "{}",
        server.logs()
    );
    assert_eq!(presented_cn(&addr), "subject=CN = second");
    let fresh = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).unwrap())
        .build()
        .unwrap();
    assert_eq!(
        fresh.get(server.url("/health")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn a_certificate_without_its_key_stops_the_start_with_the_key_named() {
    let dir = temp_dir();
    let output = pkgmirror_command(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("PKGMIRROR__SERVER__TLS_CERT", "/nonexistent/cert.pem")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("server.tls_key"), "{stderr}");

    let output = pkgmirror_command(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("PKGMIRROR__SERVER__TLS_CERT", "/nonexistent/cert.pem")
        .env("PKGMIRROR__SERVER__TLS_KEY", "/nonexistent/key.pem")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot read /nonexistent/cert.pem"), "{stderr}");
}
