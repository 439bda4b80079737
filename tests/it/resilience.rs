//! What happens when many clients arrive at once, when upstreams fail, and when the process dies.

use std::time::Duration;

use crate::support::fixtures::{json_list, json_project, simple_json};
use crate::support::*;

#[tokio::test]
async fn twenty_concurrent_first_requests_make_one_upstream_fetch() {
    let fake = FakeIndex::start();
    fake.json("demo/", &json_project());
    // Slow enough that all twenty requests arrive while the first fetch is under way.
    fake.set(Behaviour::Delay(Duration::from_millis(500)));
    let dir = temp_dir();
    let server = Server::start(dir.path(), &Launch::with_upstreams(&[&fake.url()], "10m"));
    let url = server.url("/simple/demo/");
    let requests = (0..20).map(|i| {
        let url = url.clone();
        // Half ask for JSON and half for HTML: both come from the same fetch.
        let accept = if i % 2 == 0 { JSON } else { "text/html" };
        tokio::spawn(async move {
            let response = get(&url, accept).await;
            (response.status(), response.bytes().await.unwrap().len())
        })
    });
    for request in futures::future::join_all(requests).await {
        let (status, len) = request.unwrap();
        assert_eq!(status, 200);
        assert!(len > 100);
    }
    assert_eq!(fake.hits("demo/"), 1);
}

#[tokio::test]
async fn past_the_ttl_a_failing_upstream_gets_the_stale_copy() {
    let fake = FakeIndex::start();
    fake.json("demo/", &json_project());
    let dir = temp_dir();
    let server = Server::start(dir.path(), &Launch::with_upstreams(&[&fake.url()], "1s"));
    let url = server.url("/simple/demo/");
    let fresh = get(&url, JSON).await;
    assert_eq!(header(&fresh, "x-cache"), "miss");
    let body = fresh.bytes().await.unwrap();

    fake.set(Behaviour::Status(503));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let stale = get(&url, JSON).await;
    assert_eq!(stale.status(), 200);
    assert_eq!(header(&stale, "x-cache"), "stale");
    assert_eq!(stale.bytes().await.unwrap(), body);
    assert_eq!(
        fake.hits("demo/"),
        2,
        "the upstream was asked once more, then backed off"
    );
    // Within the back-off, stale answers come without asking the upstream again.
    let again = get(&url, JSON).await;
    assert_eq!(header(&again, "x-cache"), "stale");
    assert_eq!(fake.hits("demo/"), 2);

    let health = get_json(&server.url("/health")).await;
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["upstreams"][0]["state"], "down");
    assert!(
        health["upstreams"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{health}"
    );
    assert!(health["cache"]["stale"].as_u64().unwrap() >= 2);
}

#[tokio::test]
async fn expired_pages_are_revalidated_with_the_stored_etag() {
    let fake = FakeIndex::start();
    let page = simple_json("demo", &[("demo-1.0.tar.gz", 'a')]);
    fake.json("demo/", &page);
    let dir = temp_dir();
    let server = Server::start(dir.path(), &Launch::with_upstreams(&[&fake.url()], "1s"));
    let url = server.url("/simple/demo/");
    let first = get(&url, JSON).await;
    let etag = header(&first, "etag").to_owned();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let second = get(&url, JSON).await;
    assert_eq!(second.status(), 200);
    assert_eq!(
        header(&second, "x-cache"),
        "hit",
        "a 304 upstream means the cached page is current"
    );
    assert_eq!(header(&second, "etag"), etag);
    assert_eq!(fake.hits("demo/"), 2);
    assert_eq!(
        fake.last_header("demo/", "if-none-match"),
        Some(etag_of(page.to_string().as_bytes()))
    );

    // A changed upstream page replaces the cached one after the next expiry.
    fake.json(
        "demo/",
        &simple_json("demo", &[("demo-1.0.tar.gz", 'a'), ("demo-2.0.tar.gz", 'b')]),
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let third = get_json(&url).await;
    assert_eq!(third["files"].as_array().unwrap().len(), 2);
}

/// An upstream that sends a byte now and then (so no read ever times out) is cut off by the page
/// deadline; a request whose cached page expired meanwhile gets the cached copy after a short wait
/// while the refresh goes on.
#[tokio::test]
async fn a_trickling_upstream_is_cut_off_and_an_expired_page_answers_stale_meanwhile() {
    let fake = FakeIndex::start();
    fake.json("demo/", &json_project());
    fake.json("other/", &json_project());
    let dir = temp_dir();
    let mut launch = Launch::with_upstreams(&[&fake.url()], "1s");
    launch
        .env("PKGMIRROR__PYPI__PAGE_TIMEOUT", "1500ms")
        .env("PKGMIRROR__PYPI__REFRESH_WAIT", "200ms");
    let server = Server::start(dir.path(), &launch);
    let url = server.url("/simple/demo/");
    let cached = get(&url, JSON).await.bytes().await.unwrap();

    // A new page (or the index would answer the conditional request 304), sent a byte at a time.
    let mut changed = json_project();
    changed["meta"]["_last-serial"] = 2.into();
    fake.json("demo/", &changed);
    fake.set(Behaviour::Trickle(Duration::from_millis(300)));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stale = get(&url, JSON).await;
    assert_eq!(stale.status(), 200);
    assert_eq!(header(&stale, "x-cache"), "stale");
    assert_eq!(stale.bytes().await.unwrap(), cached);

    // Nothing cached: the client waits for the deadline, not for the whole trickle (minutes).
    let response = get(&server.url("/simple/other/"), JSON).await;
    assert_eq!(response.status(), 504);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("timed out"), "{body}");

    // The refresh left running in the background ended at the deadline too, and says so.
    let health = get_json(&server.url("/health")).await;
    assert_eq!(health["upstreams"][0]["state"], "down", "{health}");
    assert!(
        fake.hits("demo/") == 2,
        "one refresh of the expired page, however many waited"
    );
}

#[tokio::test]
async fn upstream_errors_without_a_cached_copy_are_502_and_504() {
    let fake = FakeIndex::start();
    fake.json("demo/", &json_project());
    let dir = temp_dir();
    let server = Server::start(dir.path(), &Launch::with_upstreams(&[&fake.url()], "10m"));

    fake.set(Behaviour::Status(500));
    let response = get(&server.url("/simple/demo/"), JSON).await;
    assert_eq!(response.status(), 502);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("HTTP 500"), "{body}");

    fake.set(Behaviour::Truncate);
    let response = get(&server.url("/simple/demo/"), JSON).await;
    assert_eq!(response.status(), 502);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("broken response"),
        "{body}"
    );

    // Nothing partial was kept: once the upstream behaves, the page is fetched and complete.
    fake.set(Behaviour::Normal);
    let page = get_json(&server.url("/simple/demo/")).await;
    assert_eq!(page["files"].as_array().unwrap().len(), 3);

    fake.set(Behaviour::Stall);
    let response = get(&server.url("/simple/other/"), JSON).await;
    assert_eq!(response.status(), 504, "read timeout is 2s in tests");
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("timed out"), "{body}");

    fake.set(Behaviour::Normal);
    fake.page("garbled/", JSON, "{\"files\": [ {\"filename\": ");
    let response = get(&server.url("/simple/garbled/"), JSON).await;
    assert_eq!(response.status(), 502);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("cannot read"),
        "{body}"
    );
}

#[tokio::test]
async fn after_sigkill_every_page_is_served_with_the_upstream_down() {
    let fake = FakeIndex::start();
    fake.json("demo/", &json_project());
    fake.json("other/", &simple_json("other", &[("other-1.0.tar.gz", 'a')]));
    fake.json("", &json_list(&["demo", "other"]));
    let dir = temp_dir();
    let launch = Launch::with_upstreams(&[&fake.url()], "1s");
    let server = Server::start(dir.path(), &launch);
    let mut before = Vec::new();
    for path in ["/simple/", "/simple/demo/", "/simple/other/"] {
        for accept in [JSON, "text/html"] {
            let response = get(&server.url(path), accept).await;
            assert_eq!(response.status(), 200);
            before.push(response.bytes().await.unwrap());
        }
    }
    server.kill();
    fake.stop();

    let server = Server::start(dir.path(), &launch);
    let mut after = Vec::new();
    for path in ["/simple/", "/simple/demo/", "/simple/other/"] {
        for accept in [JSON, "text/html"] {
            let response = get(&server.url(path), accept).await;
            assert_eq!(response.status(), 200, "{path} after restart");
            after.push(response.bytes().await.unwrap());
        }
    }
    assert_eq!(before, after, "byte-identical pages after a SIGKILL restart");
    let health = get_json(&server.url("/health")).await;
    assert_eq!(
        health["cache"]["projects"], 2,
        "the catalogue survived too: {health}"
    );
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish() {
    let fake = FakeIndex::start();
    fake.json("demo/", &json_project());
    fake.set(Behaviour::Delay(Duration::from_millis(1500)));
    let dir = temp_dir();
    let server = Server::start(dir.path(), &Launch::with_upstreams(&[&fake.url()], "10m"));
    let url = server.url("/simple/demo/");
    let in_flight = tokio::spawn(async move { get(&url, JSON).await.status() });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, logs) = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert_eq!(
        in_flight.await.unwrap(),
        200,
        "the request under way was answered"
    );
    assert!(status.success(), "clean exit after SIGTERM: {status:?}\n{logs}");
    assert!(logs.contains("shutting down"), "{logs}");
    assert!(logs.contains("stopped"), "{logs}");
}

/// A page over `pypi.max_page_size` is a clear 502, never read further or cached.
#[tokio::test]
async fn a_page_over_the_size_cap_is_a_502_that_names_the_setting() {
    let fake = FakeIndex::start();
    fake.json("demo/", &json_project());
    let dir = temp_dir();
    let mut launch = Launch::with_upstreams(&[&fake.url()], "10m");
    launch.env("PKGMIRROR__PYPI__MAX_PAGE_SIZE", "100");
    let server = Server::start(dir.path(), &launch);
    let response = get(&server.url("/simple/demo/"), JSON).await;
    assert_eq!(response.status(), 502);
    let body: serde_json::Value = response.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("larger than 100 bytes") && message.contains("pypi.max_page_size"),
        "{message}"
    );
}
