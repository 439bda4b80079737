//! Upstream pools: an index with several equivalent URLs keeps serving fresh pages when one
//! member dies, sends its requests to the quickest member, puts a member back once a probe finds
//! it answering, and takes a new upstream list from a reload under load without a failed request.

use std::time::{Duration, Instant};

use crate::support::fixtures::{payload, publish, simple_json};
use crate::support::*;

/// Two fakes serving the same `demo` page, whose file lives on a third.
fn twin_upstreams() -> (FakeIndex, FakeIndex, FakeIndex) {
    let (a, b, files) = (FakeIndex::start(), FakeIndex::start(), FakeIndex::start());
    let body = payload(10_000, 9);
    for index in [&a, &b] {
        publish(index, &[("demo-1.0.tar.gz", &body, &files)]);
    }
    (a, b, files)
}

fn pool_launch(members: &[&FakeIndex], ttl: &str) -> Launch {
    let mut launch = Launch::default();
    let urls: Vec<String> = members.iter().map(|m| m.url()).collect();
    launch
        .env("PKGMIRROR__PYPI__INDEX_URL", &urls.join(" "))
        .env("PKGMIRROR__PYPI__INDEX_TTL", ttl)
        .env("PKGMIRROR__PYPI__ALLOW_PRIVATE_UPSTREAMS", "true")
        .env("PKGMIRROR__PYPI__CONNECT_TIMEOUT", "2s");
    launch
}

/// The state `/health` gives the member at `url`.
async fn member_state(server: &Server, url: &str) -> String {
    let health = get_json(&server.url("/health")).await;
    let members = health["upstreams"][0]["members"].as_array().unwrap().clone();
    let member = members
        .iter()
        .find(|m| m["url"] == url)
        .unwrap_or_else(|| panic!("no member {url} in {members:?}"));
    member["state"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_serves_fresh_pages_with_a_member_killed_and_takes_it_back_when_it_answers() {
    let (a, b, _files) = twin_upstreams();
    let (a_url, a_addr) = (a.url(), a.addr);
    // B is the slower, so A answers until it dies.
    b.set(Behaviour::Delay(Duration::from_millis(100)));
    let dir = temp_dir();
    let server = Server::start(dir.path(), &pool_launch(&[&a, &b], "1s"));
    let page = server.url("/simple/demo/");

    let mut a = Some(a);
    let started = Instant::now();
    let mut b_hits_when_killed = None;
    while started.elapsed() < Duration::from_secs(5) {
        if a.is_some() && started.elapsed() > Duration::from_secs(2) {
            a.take().unwrap().stop();
            b_hits_when_killed = Some(b.hits("demo/"));
        }
        let response = get(&page, "application/vnd.pypi.simple.v1+json").await;
        assert_eq!(response.status(), 200);
        let cache = header(&response, "x-cache").to_owned();
        assert_ne!(
            cache,
            "stale",
            "a live member was there to ask:\n{}",
            server.logs()
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["files"][0]["filename"], "demo-1.0.tar.gz");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let b_hits_when_killed = b_hits_when_killed.unwrap();
    assert!(
        b.hits("demo/") > b_hits_when_killed,
        "B answered the refreshes once A was gone"
    );
    assert_eq!(member_state(&server, &a_url).await, "down");
    assert_eq!(member_state(&server, &b.url()).await, "up");
    let health = get_json(&server.url("/health")).await;
    assert_eq!(
        health["upstreams"][0]["state"], "up",
        "the index as a whole is up"
    );
    // The home page lists the members.
    let home = client()
        .get(server.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(home.contains("member-url") && home.contains(&a_url), "{home}");

    // A comes back: a probe finds it answering and puts it back.
    let a = FakeIndex::start_at(a_addr);
    publish(&a, &[("demo-1.0.tar.gz", &payload(10_000, 9), &_files)]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while member_state(&server, &a_url).await != "up" {
        assert!(
            Instant::now() < deadline,
            "A was not put back:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(a.hits("pkgmirror-probe-nonexistent/") >= 1, "it was probed");
}

#[tokio::test]
async fn requests_go_to_the_quickest_member() {
    let (slow, quick) = (FakeIndex::start(), FakeIndex::start());
    for fake in [&slow, &quick] {
        for i in 0..8 {
            let name = format!("p{i}");
            fake.json(
                &format!("{name}/"),
                &simple_json(&name, &[(&format!("{name}-1.0.tar.gz"), 'a')]),
            );
        }
    }
    slow.set(Behaviour::Delay(Duration::from_millis(300)));
    let dir = temp_dir();
    let server = Server::start(dir.path(), &pool_launch(&[&slow, &quick], "10m"));
    for i in 0..8 {
        let response = get(
            &server.url(&format!("/simple/p{i}/")),
            "application/vnd.pypi.simple.v1+json",
        )
        .await;
        assert_eq!(response.status(), 200);
    }
    // Each member is measured once; then the quick one takes every request.
    let slow_hits: usize = (0..8).map(|i| slow.hits(&format!("p{i}/"))).sum();
    let quick_hits: usize = (0..8).map(|i| quick.hits(&format!("p{i}/"))).sum();
    assert_eq!((slow_hits, quick_hits), (1, 7));
    let health = get_json(&server.url("/health")).await;
    let members = health["upstreams"][0]["members"].as_array().unwrap();
    let latency = |i: usize| members[i]["latency_ms"].as_f64().unwrap();
    assert!(latency(0) > latency(1), "{members:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_the_upstream_under_load_without_a_failed_request() {
    let (a, b, _files) = twin_upstreams();
    let data = temp_dir();
    let file = data.path().join("pkgmirror.toml");
    let config = |upstream: &FakeIndex| {
        format!(
            "[pypi]\nindex_url = \"{}\"\nindex_ttl = \"1s\"\nallow_private_upstreams = true\n",
            upstream.url()
        )
    };
    std::fs::write(&file, config(&a)).unwrap();
    let mut launch = Launch::default();
    launch
        .args
        .extend(["--config".to_owned(), file.display().to_string()]);
    let server = Server::start(data.path(), &launch);
    let page = server.url("/simple/demo/");

    // Four clients ask for the page over and over for four seconds.
    let load = (0..4).map(|_| {
        let page = page.clone();
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(4) {
                let response = get(&page, "application/vnd.pypi.simple.v1+json").await;
                outcomes.push((
                    response.status().as_u16(),
                    header(&response, "x-cache").to_owned(),
                ));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            outcomes
        })
    });
    let load: Vec<_> = load.collect();

    tokio::time::sleep(Duration::from_secs(1)).await;
    std::fs::write(&file, config(&b)).unwrap();
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.logs().contains("configuration reloaded") {
        assert!(Instant::now() < deadline, "{}", server.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The old upstream goes away once the new list is in force.
    a.stop();

    let mut outcomes = Vec::new();
    for client in load {
        outcomes.extend(client.await.unwrap());
    }
    assert!(outcomes.len() > 40, "{}", outcomes.len());
    assert!(
        outcomes
            .iter()
            .all(|(status, cache)| *status == 200 && cache != "stale"),
        "{outcomes:?}"
    );
    assert!(b.hits("demo/") >= 1, "the new upstream answered the refreshes");
    let logs = server.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("configuration reloaded"))
        .unwrap();
    assert!(line.contains("pypi.index_url"), "{line}");
}
