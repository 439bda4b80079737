//! Admin endpoints, `/health`, logging, running without an upstream, and credential hygiene.

use serde_json::json;

use crate::support::fixtures::{json_list, simple_json};
use crate::support::*;

#[tokio::test]
async fn admin_endpoints_need_the_token_when_one_is_set() {
    let fake = FakeIndex::start();
    fake.json("demo/", &simple_json("demo", &[("demo-1.0.tar.gz", 'a')]));
    fake.json("", &json_list(&["demo"]));
    let dir = temp_dir();
    let mut launch = Launch::with_upstreams(&[&fake.url()], "10m");
    launch.env("PKGMIRROR__SERVER__ADMIN_TOKEN", "s3cret-token");
    let server = Server::start(dir.path(), &launch);
    get_json(&server.url("/simple/demo/")).await;
    get_json(&server.url("/simple/")).await;
    let c = client();
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic s3cret-token"),
        Some("Bearer s3cret-tokenX"),
    ] {
        let mut request = c.delete(server.url("/cache/demo"));
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{auth:?}");
        assert_eq!(header(&response, "www-authenticate"), "Bearer");
    }
    assert_eq!(fake.hits("demo/"), 1);
    let response = c
        .delete(server.url("/cache/Demo"))
        .header("Authorization", "Bearer s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        json!({"status": "success", "data": null})
    );
    get_json(&server.url("/simple/demo/")).await;
    assert_eq!(fake.hits("demo/"), 2, "the cleared page was fetched again");

    let response = c
        .delete(server.url("/cache/list"))
        .header("Authorization", "bearer s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    get_json(&server.url("/simple/")).await;
    assert_eq!(fake.hits(""), 2);
    assert!(
        !server.logs().contains("s3cret-token"),
        "the token is never logged"
    );
}

#[tokio::test]
async fn without_a_token_loopback_clients_may_clear_the_cache() {
    let fake = FakeIndex::start();
    fake.json("demo/", &simple_json("demo", &[("demo-1.0.tar.gz", 'a')]));
    let dir = temp_dir();
    let server = Server::start(dir.path(), &Launch::with_upstreams(&[&fake.url()], "10m"));
    get_json(&server.url("/simple/demo/")).await;
    let response = client().delete(server.url("/cache/demo")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let response = client().delete(server.url("/cache/..")).send().await.unwrap();
    // The client resolves the `..` itself: this is `DELETE /`, which the home page refuses.
    assert!(
        [400, 404, 405].contains(&response.status().as_u16()),
        "{}",
        response.status()
    );
    get_json(&server.url("/simple/demo/")).await;
    assert_eq!(fake.hits("demo/"), 2);
}

#[tokio::test]
async fn with_no_upstream_the_server_starts_and_says_so() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &Launch::default());
    let health = get_json(&server.url("/health")).await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["upstream_configured"], false);
    assert_eq!(health["message"], "no upstream configured");
    assert_eq!(health["upstreams"], json!([]));
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        health["storage"],
        json!({"backend": "local", "state": "ok", "error": null, "local_tier": null})
    );
    assert!(health["uptime_secs"].is_u64());
    assert!(server.logged("no upstream configured"), "{}", server.logs());
    let response = get(&server.url("/simple/demo/"), JSON).await;
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("no upstream is configured"),
        "{body}"
    );
}

#[tokio::test]
async fn pages_cached_with_an_upstream_are_served_after_it_is_removed_from_the_config() {
    let fake = FakeIndex::start();
    fake.json("demo/", &simple_json("demo", &[("demo-1.0.tar.gz", 'a')]));
    let dir = temp_dir();
    let server = Server::start(dir.path(), &Launch::with_upstreams(&[&fake.url()], "10m"));
    let before = get_json(&server.url("/simple/demo/")).await;
    server.kill();
    let server = Server::start(dir.path(), &Launch::default());
    let response = get(&server.url("/simple/demo/"), JSON).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-cache"), "hit");
    assert_eq!(response.json::<serde_json::Value>().await.unwrap(), before);
}

#[tokio::test]
async fn upstream_credentials_are_used_and_never_shown() {
    let fake = FakeIndex::start();
    fake.json("demo/", &simple_json("demo", &[("demo-1.0.tar.gz", 'a')]));
    let url = fake.url_with_credentials("alice", "pa55word");
    let dir = temp_dir();
    let server = Server::start(dir.path(), &Launch::with_upstreams(&[&url], "10m"));
    let page = get_json(&server.url("/simple/demo/")).await;
    assert_eq!(
        page["files"][0]["filename"], "demo-1.0.tar.gz",
        "basic auth from the URL was sent"
    );
    fake.set(Behaviour::Status(500));
    let response = get(&server.url("/simple/other/"), JSON).await;
    assert_eq!(response.status(), 502);
    let error = response.text().await.unwrap();
    let health = get(&server.url("/health"), "application/json")
        .await
        .text()
        .await
        .unwrap();
    for shown in [&error, &health, &server.logs()] {
        assert!(!shown.contains("pa55word"), "the password leaked: {shown}");
    }
    assert!(health.contains("***@127.0.0.1"), "{health}");
}

#[tokio::test]
async fn json_logs_have_one_line_per_request_with_status_and_cache_outcome() {
    let fake = FakeIndex::start();
    fake.json("demo/", &simple_json("demo", &[("demo-1.0.tar.gz", 'a')]));
    let dir = temp_dir();
    let mut launch = Launch::with_upstreams(&[&fake.url()], "10m");
    launch.arg("--log-format").arg("json");
    let server = Server::start(dir.path(), &launch);
    get_json(&server.url("/simple/demo/")).await;
    get_json(&server.url("/simple/demo/")).await;
    // The access line is written after the response: give it a moment.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let logs = server.logs();
    let access: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}"))
        })
        .filter(|v| v["fields"]["path"] == "/simple/demo/")
        .collect();
    assert_eq!(access.len(), 2, "{logs}");
    assert_eq!(access[0]["fields"]["status"], 200);
    assert_eq!(access[0]["fields"]["cache"], "miss");
    assert_eq!(access[1]["fields"]["cache"], "hit");
    assert!(access[1]["fields"]["duration_ms"].is_number());
}

#[tokio::test]
async fn proxpi_variables_configure_a_drop_in_replacement() {
    let fake = FakeIndex::start();
    fake.json("demo/", &simple_json("demo", &[("demo-1.0.tar.gz", 'a')]));
    let dir = temp_dir();
    let mut launch = Launch::default();
    launch
        .env("PROXPI_INDEX_URL", &fake.url())
        .env("PROXPI_INDEX_TTL", "600");
    let server = Server::start(dir.path(), &launch);
    // proxpi's paths and answers.
    let page = get_json(&server.url("/index/demo/")).await;
    assert_eq!(page["files"][0]["filename"], "demo-1.0.tar.gz");
    let health = get_json(&server.url("/health")).await;
    assert_eq!(health["upstreams"][0]["url"], fake.url());
    assert_eq!(health["upstreams"][0]["state"], "up");
}

#[tokio::test]
async fn a_blob_store_that_cannot_write_makes_health_degraded() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &Launch::default());
    let tmp = dir.path().join("blobs").join("tmp");
    std::fs::remove_dir_all(&tmp).unwrap();
    std::fs::write(&tmp, b"not a directory").unwrap();
    let health = get_json(&server.url("/health")).await;
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["storage"]["state"], "failing");
    assert!(
        health["storage"]["error"].as_str().unwrap().contains("tmp"),
        "{health}"
    );
}

/// A client that sends a request head and then trickles (or withholds) its body gets an answer
/// once `server.request_body_timeout` has passed, instead of holding a connection and a handler
/// for as long as it likes.
#[tokio::test]
async fn a_request_body_that_never_arrives_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = temp_dir();
    let mut launch = Launch::default();
    launch.env("PKGMIRROR__SERVER__REQUEST_BODY_TIMEOUT", "1s");
    let server = Server::start(dir.path(), &launch);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /admin/sign-in HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ncsrf="
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "still waiting for the body after 20 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

/// A client that speaks broken HTTP is the client's problem, not the server's: it is logged as a
/// warning that names the client's address, never as an error without one.
#[tokio::test]
async fn a_client_protocol_error_is_a_warning_naming_the_client() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = temp_dir();
    let mut launch = Launch::default();
    launch.arg("--log-format").arg("json");
    let server = Server::start(dir.path(), &launch);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let client = stream.local_addr().unwrap().to_string();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        server.logged(&client),
        "no log line names {client}: {}",
        server.logs()
    );
    let logs = server.logs();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let about_client: Vec<&serde_json::Value> =
        lines.iter().filter(|v| v.to_string().contains(&client)).collect();
    assert!(
        about_client.iter().all(|v| v["level"] == "WARN"),
        "{about_client:?}"
    );
    assert!(
        lines.iter().all(|v| v["level"] != "ERROR"),
        "a client's bad request logged an error: {logs}"
    );
}

/// `log.access_hit_sample = N` writes one access-log line in N for successful cache hits; misses
/// and errors are always logged.
#[tokio::test]
async fn cache_hits_in_the_access_log_can_be_sampled() {
    let fake = FakeIndex::start();
    fake.json("demo/", &simple_json("demo", &[]));
    let dir = temp_dir();
    let mut launch = Launch::with_upstreams(&[&fake.url()], "10m");
    launch.arg("--log-format").arg("json");
    launch.env("PKGMIRROR__LOG__ACCESS_HIT_SAMPLE", "1000");
    let server = Server::start(dir.path(), &launch);
    for _ in 0..6 {
        get_json(&server.url("/simple/demo/")).await;
    }
    assert_eq!(get(&server.url("/simple/nope/"), JSON).await.status(), 404);
    // The access line is written after the response: wait for the last one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !server.logs().contains("/simple/nope/") && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let logs = server.logs();
    let caches: Vec<String> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["path"] == "/simple/demo/")
        .map(|v| v["fields"]["cache"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        caches,
        ["miss", "hit"],
        "5 hits, the first of 1000 logged: {logs}"
    );
    assert!(logs.contains("/simple/nope/"), "errors are always logged");
}
