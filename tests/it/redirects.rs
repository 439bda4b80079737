//! Redirects answered by a configured upstream: they may move within it, but with
//! `pypi.allow_private_upstreams = false` a redirect that leaves the configured host:port for a
//! loopback, link-local or private address is refused. The server under test can reach nothing
//! but 127.0.0.1 (`tools::loopback_only_env`), so the refused addresses are never contacted.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;

use crate::support::fixtures::simple_json;
use crate::support::tools::loopback_only_env;
use crate::support::*;

/// An upstream answering each path in `routes` with a 302 to its URL (relative ones stay on this
/// upstream), and `/simple/moved/` with a project page.
fn redirecting_upstream(routes: HashMap<String, String>) -> LoopbackServer {
    let routes = Arc::new(routes);
    LoopbackServer::start(1, move |mut stream| {
        let routes = Arc::clone(&routes);
        async move {
            let Some((path, _)) = read_request_head(&mut stream).await else {
                return;
            };
            let response = match routes.get(&path) {
                Some(location) => format!(
                    "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                ),
                None if path == "/simple/moved/" => {
                    let body = simple_json("moved", &[]).to_string();
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: {JSON}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                }
                None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
            };
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    })
}

fn launch(upstream: &LoopbackServer, allow_private: bool) -> Launch {
    let mut launch = Launch::with_upstreams(&[&format!("http://{}/simple/", upstream.addr)], "10m");
    for (key, value) in loopback_only_env() {
        launch.env(key, value);
    }
    launch.env(
        "PKGMIRROR__PYPI__ALLOW_PRIVATE_UPSTREAMS",
        &allow_private.to_string(),
    );
    launch
}

#[tokio::test]
async fn redirects_leaving_the_upstream_for_private_addresses_are_refused() {
    let elsewhere = FakeIndex::start();
    for project in ["loopback", "named"] {
        elsewhere.json(&format!("{project}/"), &simple_json(project, &[]));
    }
    let routes = HashMap::from(
        [
            ("same", "/simple/moved/".to_owned()),
            ("loopback", format!("http://{}/simple/loopback/", elsewhere.addr)),
            (
                "named",
                format!("http://localhost:{}/simple/named/", elsewhere.addr.port()),
            ),
            ("metadata", "http://169.254.169.254/latest/meta-data/".to_owned()),
            ("private", "http://10.0.0.1/simple/private/".to_owned()),
        ]
        .map(|(project, to)| (format!("/simple/{project}/"), to)),
    );
    let upstream = redirecting_upstream(routes);
    let dir = temp_dir();
    let server = Server::start(dir.path(), &launch(&upstream, false));

    let same = get(&server.url("/simple/same/"), JSON).await;
    assert_eq!(
        same.status(),
        200,
        "a redirect within the configured upstream is followed"
    );

    for (project, address) in [
        ("loopback", "127.0.0.1"),
        ("named", "localhost"),
        ("metadata", "169.254.169.254"),
        ("private", "10.0.0.1"),
    ] {
        let response = get(&server.url(&format!("/simple/{project}/")), JSON).await;
        assert_eq!(response.status(), 502, "{project}");
        let message = response.text().await.unwrap();
        assert!(message.contains(address), "{project}: {message}");
        assert!(
            message.contains("pypi.allow_private_upstreams"),
            "{project}: the refusal says how to allow it: {message}"
        );
    }
    assert_eq!(elsewhere.hits("loopback/"), 0, "never contacted");
    assert_eq!(elsewhere.hits("named/"), 0, "never contacted");
}

#[tokio::test]
async fn with_private_upstreams_allowed_redirects_to_them_are_followed() {
    let elsewhere = FakeIndex::start();
    elsewhere.json("loopback/", &simple_json("loopback", &[]));
    let routes = HashMap::from([(
        "/simple/loopback/".to_owned(),
        format!("http://{}/simple/loopback/", elsewhere.addr),
    )]);
    let upstream = redirecting_upstream(routes);
    let dir = temp_dir();
    let server = Server::start(dir.path(), &launch(&upstream, true));
    let response = get(&server.url("/simple/loopback/"), JSON).await;
    assert_eq!(response.status(), 200);
    assert_eq!(elsewhere.hits("loopback/"), 1);
}
