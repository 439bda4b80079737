//! Behind a reverse proxy on the same host every connection comes from loopback: only addresses
//! listed in `server.trusted_proxies` have their `X-Forwarded-For` / `Forwarded` believed, and the
//! client address they give is the one the loopback rule, the failed-attempt limit and the logs use.

use crate::support::fixtures::simple_json;
use crate::support::*;

const TOKEN: &str = "proxied-token";

fn start(fake: &FakeIndex, env: &[(&str, &str)]) -> (tempfile::TempDir, Server) {
    let dir = temp_dir();
    let mut launch = Launch::with_upstreams(&[&fake.url()], "10m");
    for (key, value) in env {
        launch.env(key, value);
    }
    let server = Server::start(dir.path(), &launch);
    (dir, server)
}

async fn forget_list(server: &Server, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client().delete(server.url("/cache/list"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn forwarded_clients_of_a_trusted_proxy_are_not_loopback() {
    let fake = FakeIndex::start();
    let (_dir, server) = start(&fake, &[("PKGMIRROR__SERVER__TRUSTED_PROXIES", "127.0.0.1")]);
    let remote = [("X-Forwarded-For", "203.0.113.9")];
    assert_eq!(forget_list(&server, &remote).await.status(), 403);
    let page = client()
        .get(server.url("/admin"))
        .header("X-Forwarded-For", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 403, "the admin page too");
    let rfc7239 = [("Forwarded", "for=\"[2001:db8::7]:4711\";proto=https")];
    assert_eq!(forget_list(&server, &rfc7239).await.status(), 403);
    // A client that names itself loopback ahead of the proxy's entry gains nothing: the chain is
    // read from the proxy's end.
    let spoofed = [("X-Forwarded-For", "127.0.0.1, 203.0.113.9")];
    assert_eq!(forget_list(&server, &spoofed).await.status(), 403);
    // A loopback client through the proxy, and the proxy host itself, are loopback.
    let local = [("X-Forwarded-For", "127.0.0.1")];
    assert_eq!(forget_list(&server, &local).await.status(), 200);
    assert_eq!(forget_list(&server, &[]).await.status(), 200);
    let logs = server.logs();
    assert!(
        logs.contains("203.0.113.9") && logs.contains("2001:db8::7"),
        "the access log names the forwarded client:\n{logs}"
    );
}

#[tokio::test]
async fn forwarded_headers_from_untrusted_peers_are_ignored() {
    let fake = FakeIndex::start();
    let (_dir, server) = start(
        &fake,
        &[("PKGMIRROR__SERVER__TRUSTED_PROXIES", "10.9.9.9, 192.0.2.0/24")],
    );
    let remote = [("X-Forwarded-For", "203.0.113.9")];
    assert_eq!(
        forget_list(&server, &remote).await.status(),
        200,
        "the peer (loopback) is no trusted proxy: its header says nothing"
    );
}

#[tokio::test]
async fn failed_attempts_are_counted_per_forwarded_client() {
    let fake = FakeIndex::start();
    fake.json("demo/", &simple_json("demo", &[]));
    let (_dir, server) = start(
        &fake,
        &[
            ("PKGMIRROR__SERVER__TRUSTED_PROXIES", "127.0.0.0/8,::1"),
            ("PKGMIRROR__SERVER__ADMIN_TOKEN", TOKEN),
        ],
    );
    let as_client = |client: &'static str, token: &'static str| {
        let bearer = format!("Bearer {token}");
        let server = &server;
        async move {
            forget_list(server, &[("X-Forwarded-For", client), ("Authorization", &bearer)])
                .await
                .status()
        }
    };
    for _ in 0..5 {
        assert_eq!(as_client("203.0.113.9", "guess").await, 401);
    }
    assert_eq!(as_client("203.0.113.9", TOKEN).await, 429);
    assert_eq!(
        as_client("203.0.113.10", TOKEN).await,
        200,
        "one client's guesses lock out that client, not every admin behind the proxy"
    );
    let logs = server.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("admin action") && l.contains("203.0.113.9") && l.contains("wrong token")),
        "the admin log names the forwarded client:\n{logs}"
    );
}
