//! `[limits]`: 429 with Retry-After past a client's rate or its concurrent downloads (each client
//! by its forwarded address behind a trusted proxy), 431 for an oversized head, and at most
//! `upstream_concurrency` requests at once to an upstream host.

use std::time::Duration;

use crate::support::fixtures::{payload, publish};
use crate::support::*;

fn launch(fake: &FakeIndex) -> Launch {
    let mut launch = Launch::with_upstreams(&[&fake.url()], "10m");
    launch.env("PKGMIRROR__PYPI__ALLOW_PRIVATE_UPSTREAMS", "true");
    launch
}

/// A mirror of a fake listing `demo`, with `env` on top; the fake must outlive the test.
fn demo_server(env: &[(&str, &str)]) -> (FakeIndex, tempfile::TempDir, Server) {
    let fake = FakeIndex::start();
    publish(&fake, &[("demo-1.0.tar.gz", &payload(1000, 1), &fake)]);
    let dir = temp_dir();
    let mut launch = launch(&fake);
    for (key, value) in env {
        launch.env(key, value);
    }
    let server = Server::start(dir.path(), &launch);
    (fake, dir, server)
}

#[tokio::test]
async fn a_client_past_its_rate_gets_429_and_others_and_health_do_not() {
    let (_fake, _dir, server) = demo_server(&[
        ("PKGMIRROR__LIMITS__REQUESTS_PER_SECOND", "1"),
        ("PKGMIRROR__LIMITS__BURST", "5"),
        ("PKGMIRROR__SERVER__TRUSTED_PROXIES", "127.0.0.1"),
    ]);
    let c = client();
    let page = server.url("/simple/demo/");
    let from = |client: &'static str| c.get(&page).header("X-Forwarded-For", client);

    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(from("198.51.100.7").send().await.unwrap().status().as_u16());
    }
    assert_eq!(&statuses[..5], [200; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    let refused = from("198.51.100.7").send().await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = refused.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("198.51.100.7") && message.contains("limits.requests_per_second"),
        "{message}"
    );

    // Another client behind the same proxy has its own allowance; the health check is never
    // refused.
    assert_eq!(from("198.51.100.8").send().await.unwrap().status(), 200);
    for _ in 0..10 {
        assert_eq!(c.get(server.url("/health")).send().await.unwrap().status(), 200);
    }
    // A second later the client may go on.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(from("198.51.100.7").send().await.unwrap().status(), 200);
    assert!(
        server.logs().contains("status=429"),
        "the refusals are in the access log"
    );
}

#[tokio::test]
async fn without_a_trusted_proxy_forwarded_addresses_share_the_peers_allowance() {
    let (_fake, _dir, server) = demo_server(&[
        ("PKGMIRROR__LIMITS__REQUESTS_PER_SECOND", "1"),
        ("PKGMIRROR__LIMITS__BURST", "3"),
    ]);
    let c = client();
    let mut statuses = Vec::new();
    for i in 0..5 {
        let response = c
            .get(server.url("/simple/demo/"))
            .header("X-Forwarded-For", format!("198.51.100.{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
}

#[tokio::test]
async fn concurrent_downloads_per_client_are_capped_until_a_body_ends() {
    let fake = FakeIndex::start();
    // Larger than the socket buffers: a response whose body is not read stays under way.
    let body = payload(24 * 1024 * 1024, 3);
    publish(&fake, &[("demo-1.0.tar.gz", &body, &fake)]);
    let dir = temp_dir();
    let mut launch = launch(&fake);
    launch.env("PKGMIRROR__LIMITS__DOWNLOADS_PER_CLIENT", "1");
    let server = Server::start(dir.path(), &launch);
    let url = server.url("/simple/demo/demo-1.0.tar.gz");
    // Cached first.
    let c = client();
    assert_eq!(
        c.get(&url).send().await.unwrap().bytes().await.unwrap().len(),
        body.len()
    );

    let holding = c.get(&url).send().await.unwrap();
    assert_eq!(holding.status(), 200);
    let second = client().get(&url).send().await.unwrap();
    assert_eq!(second.status(), 429);
    assert_eq!(header(&second, "retry-after"), "1");
    let message = second.text().await.unwrap();
    assert!(message.contains("limits.downloads_per_client"), "{message}");
    // Pages are not downloads.
    assert_eq!(
        c.get(server.url("/simple/demo/")).send().await.unwrap().status(),
        200
    );
    // Once the first body is read to its end, the slot is free.
    assert_eq!(holding.bytes().await.unwrap().len(), body.len());
    let mut third = None;
    for _ in 0..50 {
        let response = client().get(&url).send().await.unwrap();
        if response.status() == 200 {
            third = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let third = third.expect("the slot was freed");
    assert_eq!(third.bytes().await.unwrap().len(), body.len());
}

#[tokio::test]
async fn an_oversized_request_head_gets_431() {
    let dir = temp_dir();
    let mut launch = Launch::default();
    launch.env("PKGMIRROR__LIMITS__MAX_HEADER_SIZE", "4KiB");
    let server = Server::start(dir.path(), &launch);
    let c = client();
    let big = "x".repeat(5000);
    let response = c
        .get(server.url("/health"))
        .header("X-Big", &big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);
    let response = c
        .get(server.url("/health"))
        .header("X-Small", "y")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_one_upstream_host_wait_their_turn() {
    for (limit, at_most) in [("1", 1), ("0", 4)] {
        let fake = FakeIndex::start();
        let files: Vec<(String, Vec<u8>)> = (0..4)
            .map(|i| (format!("demo-1.{i}.tar.gz"), payload(1000, i as u8)))
            .collect();
        let listed: Vec<(&str, &[u8], &FakeIndex)> = files
            .iter()
            .map(|(name, body)| (name.as_str(), body.as_slice(), &fake))
            .collect();
        publish(&fake, &listed);
        let dir = temp_dir();
        let mut launch = launch(&fake);
        launch.env("PKGMIRROR__LIMITS__UPSTREAM_CONCURRENCY", limit);
        let server = Server::start(dir.path(), &launch);
        assert_eq!(
            client()
                .get(server.url("/simple/demo/"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        // Each file takes the fake 300 ms, so four asked at once overlap unless made to wait.
        fake.set(Behaviour::Delay(Duration::from_millis(300)));
        let fetches = files.iter().map(|(name, body)| {
            let url = server.url(&format!("/simple/demo/{name}"));
            async move {
                let response = client().get(&url).send().await.unwrap();
                assert_eq!(response.status(), 200, "{url}");
                assert_eq!(response.bytes().await.unwrap().len(), body.len());
            }
        });
        futures::future::join_all(fetches).await;
        if at_most == 1 {
            assert_eq!(fake.max_in_flight(), 1, "limit 1");
        } else {
            assert!(fake.max_in_flight() > 1, "without a limit the fetches overlap");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_a_connection_waits_until_another_closes() {
    use std::io::{Read, Write};
    let dir = temp_dir();
    let mut launch = Launch::default();
    // One per worker thread (the server has one per core; the test machine has two or more).
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    launch.env("PKGMIRROR__LIMITS__MAX_CONNECTIONS", &workers.to_string());
    let server = Server::start(dir.path(), &launch);
    let addr = server.url("").trim_start_matches("http://").to_owned();
    let request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let answered = |stream: &mut std::net::TcpStream| {
        stream
            .set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        let mut buf = [0u8; 64];
        matches!(stream.read(&mut buf), Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 200"))
    };
    // Keep-alive connections that each had an answer hold every slot.
    let mut held: Vec<std::net::TcpStream> = (0..workers)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&addr).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            assert!(answered(&mut stream));
            stream
        })
        .collect();
    let mut waiting = std::net::TcpStream::connect(&addr).unwrap();
    waiting.write_all(request.as_bytes()).unwrap();
    assert!(
        !answered(&mut waiting),
        "a connection past the limit is not served yet"
    );
    drop(held.pop());
    waiting.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    let n = waiting.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "served once a slot is free"
    );
}
