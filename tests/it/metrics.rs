//! `/metrics`: Prometheus's own checker accepts it, OpenMetrics parses, and after a scripted
//! session the counters equal the requests made.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use crate::support::fixtures::{payload, publish};
use crate::support::tools::{self, Tool};
use crate::support::*;

/// What Prometheus sends as `Accept`.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// The samples of an exposition: (name, labels) to value.
pub struct Samples(Vec<(String, BTreeMap<String, String>, f64)>);

impl Samples {
    pub fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("a number in {line:?}")),
            };
            samples.push((name.to_owned(), labels, value));
        }
        Self(samples)
    }

    /// The sum of `name`'s samples whose labels include `labels` (0 when none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }
}

/// A file of the repository.
fn repo_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The metrics address the server logged.
fn metrics_url(server: &Server) -> String {
    assert!(server.logged("metrics on http://"), "{}", server.logs());
    let logs = server.logs();
    let at = logs.find("metrics on http://").unwrap() + "metrics on ".len();
    logs[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches('"')
        .to_owned()
}

#[tokio::test]
async fn a_scripted_session_is_counted_exactly_and_promtool_accepts_it() {
    if !tools::require_all(&[Tool::Promtool, Tool::Pip]) {
        return;
    }
    let fake = FakeIndex::start();
    let body = payload(300_000, 7);
    publish(&fake, &[("demo-1.0.tar.gz", &body, &fake)]);
    let dir = temp_dir();
    let mut launch = Launch::with_upstreams(&[&fake.url()], "10m");
    launch
        .env("PKGMIRROR__PYPI__ALLOW_PRIVATE_UPSTREAMS", "true")
        .env("PKGMIRROR__METRICS__LISTEN", "127.0.0.1:0")
        .env("PKGMIRROR__METRICS__TOKEN", "scrape-token");
    let server = Server::start(dir.path(), &launch);
    let metrics = metrics_url(&server);

    // The session: a page three times (one miss, two hits), its file twice (one miss, one hit),
    // a HEAD of the page, and a path nothing serves.
    let c = client();
    for _ in 0..3 {
        assert_eq!(
            get(
                &server.url("/simple/demo/"),
                "application/vnd.pypi.simple.v1+json"
            )
            .await
            .status(),
            200
        );
    }
    for expected in ["miss", "hit"] {
        let response = c
            .get(server.url("/simple/demo/demo-1.0.tar.gz"))
            .send()
            .await
            .unwrap();
        assert_eq!(header(&response, "x-cache"), expected);
        assert_eq!(response.bytes().await.unwrap().len(), body.len());
    }
    assert_eq!(
        c.head(server.url("/simple/demo/")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        c.get(server.url("/no/such/path")).send().await.unwrap().status(),
        404
    );

    // The metrics address answers without a token, in the text format.
    let response = c.get(&metrics).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type"),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();

    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, &text).unwrap();
    let checked = Command::new(tools::path(Tool::Promtool))
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics failed:\n{}{}\n--- the metrics\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let samples = Samples::parse(&text);
    let requests = |route: &str, method: &str, status: &str| {
        samples.sum(
            "pkgmirror_http_requests_total",
            &[("route", route), ("method", method), ("status", status)],
        )
    };
    assert_eq!(requests("simple_page", "GET", "200"), 3.0);
    assert_eq!(requests("simple_page", "HEAD", "200"), 1.0);
    assert_eq!(requests("file", "GET", "200"), 2.0);
    assert_eq!(requests("other", "GET", "404"), 1.0);
    assert_eq!(
        samples.sum(
            "pkgmirror_http_request_duration_seconds_count",
            &[("route", "simple_page")]
        ),
        4.0
    );
    assert_eq!(
        samples.sum(
            "pkgmirror_http_request_duration_seconds_count",
            &[("route", "file")]
        ),
        2.0
    );
    let size = body.len() as f64;
    for cache in ["miss", "hit"] {
        assert_eq!(
            samples.sum(
                "pkgmirror_served_bytes_total",
                &[("route", "file"), ("cache", cache)]
            ),
            size,
            "{cache}"
        );
    }
    // Upstream: the page once and the file once, both from the fake, counted under its address.
    let upstream = fake.addr.to_string();
    let fetched = (fake.hits("demo/") + fake.hits_of("/files/demo-1.0.tar.gz")) as f64;
    assert_eq!(fetched, 2.0);
    assert_eq!(
        samples.sum(
            "pkgmirror_upstream_requests_total",
            &[("upstream", &upstream), ("outcome", "2xx")]
        ),
        fetched
    );
    assert_eq!(samples.sum("pkgmirror_upstream_requests_total", &[]), fetched);
    assert_eq!(
        samples.sum(
            "pkgmirror_upstream_request_duration_seconds_count",
            &[("upstream", &upstream)]
        ),
        fetched
    );
    assert!(
        samples.sum(
            "pkgmirror_upstream_received_bytes_total",
            &[("upstream", &upstream)]
        ) > size
    );
    assert_eq!(samples.sum("pkgmirror_stored_blobs_total", &[]), 1.0);
    assert_eq!(samples.sum("pkgmirror_stored_bytes_total", &[]), size);
    assert_eq!(samples.sum("pkgmirror_blob_store_bytes", &[]), size);
    assert_eq!(
        samples.sum("pkgmirror_cache_lookups_total", &[("outcome", "stale")]),
        0.0
    );
    assert_eq!(samples.sum("pkgmirror_upstream_up", &[("index", "main")]), 1.0);
    assert_eq!(
        samples.sum("pkgmirror_upstream_state", &[("index", "main"), ("state", "up")]),
        1.0
    );
    assert_eq!(samples.sum("pkgmirror_catalogue_projects", &[]), 1.0);
    assert_eq!(samples.sum("pkgmirror_downloads_in_flight", &[]), 0.0);
    assert_eq!(samples.sum("pkgmirror_hash_mismatches_total", &[]), 0.0);
    assert_eq!(
        samples.sum("pkgmirror_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        1.0
    );
    assert!(samples.sum("process_resident_memory_bytes", &[]) > 0.0);

    // Prometheus asks for OpenMetrics and gets it; Python's reference parser reads it, and its
    // counters say what the text format said.
    let response = c
        .get(&metrics)
        .header("Accept", PROMETHEUS_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&response, "content-type"),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let openmetrics = response.text().await.unwrap();
    assert!(openmetrics.ends_with("# EOF\n"));
    let om_file = dir.path().join("metrics.om");
    std::fs::write(&om_file, &openmetrics).unwrap();
    let parsed = Command::new(tools::path(Tool::Pip))
        .arg("-c")
        .arg(
            "import sys\n\
             from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
             for family in text_string_to_metric_families(open(sys.argv[1]).read()):\n\
             \x20   for s in family.samples:\n\
             \x20       if s.name == 'pkgmirror_http_requests_total' and s.labels['route'] == 'file':\n\
             \x20           print(family.type, s.labels['status'], s.value)\n",
        )
        .arg(&om_file)
        .output()
        .unwrap();
    assert!(
        parsed.status.success(),
        "the OpenMetrics parser refused it:\n{}\n--- the metrics\n{openmetrics}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&parsed.stdout).trim(), "counter 200 2.0");

    // On the main port, /metrics needs metrics.token.
    for auth in [None, Some("Bearer wrong")] {
        let mut request = c.get(server.url("/metrics"));
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        assert_eq!(request.send().await.unwrap().status(), 401, "{auth:?}");
    }
    let response = c
        .get(server.url("/metrics"))
        .bearer_auth("scrape-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let later = Samples::parse(&response.text().await.unwrap());
    assert_eq!(
        later.sum(
            "pkgmirror_http_requests_total",
            &[("route", "metrics"), ("status", "401")]
        ),
        2.0
    );
    assert_eq!(
        later.sum(
            "pkgmirror_http_requests_total",
            &[("route", "metrics"), ("status", "200")]
        ),
        2.0
    );
    // Every series the example dashboard draws is one pkgmirror serves (those of S3, the tiered
    // store's local tier and joined work appear only once they happen), and the example
    // Prometheus config is valid.
    let dashboard = std::fs::read_to_string(repo_file("docs/monitoring/grafana-dashboard.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&dashboard).expect("the dashboard is JSON");
    let served: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split(' ').next())
        .collect();
    let later_only = [
        "pkgmirror_s3_operations_total",
        "pkgmirror_local_tier_blobs",
        "pkgmirror_local_tier_bytes",
        "pkgmirror_local_tier_fills_total",
        "pkgmirror_singleflight_joins_total",
    ];
    let mut drawn: Vec<&str> = dashboard
        .match_indices("pkgmirror_")
        .map(|(at, _)| {
            let name = &dashboard[at..];
            let end = name
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(name.len());
            let name = &name[..end];
            ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name)
        })
        .collect();
    drawn.sort_unstable();
    drawn.dedup();
    assert!(drawn.len() > 20, "{drawn:?}");
    for name in drawn {
        assert!(
            served.contains(&name) || later_only.contains(&name),
            "the dashboard draws {name}, which /metrics does not serve"
        );
    }
    let checked = Command::new(tools::path(Tool::Promtool))
        .args(["check", "config"])
        .arg(repo_file("docs/monitoring/prometheus.yml"))
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );

    // The metrics address serves nothing else.
    let elsewhere = metrics.replace("/metrics", "/simple/demo/");
    assert_eq!(c.get(&elsewhere).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn without_a_token_the_main_port_does_not_serve_metrics() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &Launch::default());
    let response = client().get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let body = response.text().await.unwrap();
    assert!(body.contains("metrics.token"), "{body}");
}
