//! Prometheus metrics: what `/metrics` serves.
//!
//! Two kinds of numbers, kept apart so nothing is counted twice:
//! - **events** (requests served, upstream requests, S3 operations, single-flight joins) are
//!   counted where they happen, into [`METRICS`], one registry for the process (the process is
//!   what Prometheus scrapes, and the upstream clients, the S3 client and the HTTP edge that count
//!   them share nothing else);
//! - **state** the mirror keeps anyway for `/health` (cache counters, store sizes, upstream
//!   health) is read when a scrape comes, into [`Families`].
//!
//! [`render`] writes both in the Prometheus text format, or in OpenMetrics for a client that
//! asks for it (Prometheus itself does).

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

/// The process's event metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Seconds; from a cached page served from memory (well under a millisecond) to a large file
/// fetched from a slow upstream.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// `text/plain; version=0.0.4`: what a client that does not ask for OpenMetrics gets.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The event metrics, counted where the events happen.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    served_bytes: IntCounterVec,
    upstream_requests: IntCounterVec,
    upstream_duration: HistogramVec,
    upstream_bytes: IntCounterVec,
    singleflight_joins: IntCounterVec,
    s3_operations: IntCounterVec,
    refreshes_ahead: IntCounter,
}

/// The families are fixed at compile time: an invalid name or a duplicate is a bug the unit
/// tests catch, not something input can cause.
fn registered<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("the metric families are valid and distinct");
    collector
}

fn counters(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid counter family");
    registered(registry, vec)
}

fn histograms(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    registered(
        registry,
        HistogramVec::new(opts, labels).expect("a valid histogram family"),
    )
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("the process metrics are distinct from pkgmirror's");
        Self {
            requests: counters(
                &registry,
                "pkgmirror_http_requests_total",
                "Requests answered, by route group, ecosystem, method and status.",
                &["route", "ecosystem", "method", "status"],
            ),
            request_duration: histograms(
                &registry,
                "pkgmirror_http_request_duration_seconds",
                "Time from a request's arrival to its response head (a streamed body's transfer is not included).",
                &["route", "ecosystem"],
            ),
            served_bytes: counters(
                &registry,
                "pkgmirror_served_bytes_total",
                "Response body bytes sent to clients, by route group, ecosystem and cache outcome (X-Cache).",
                &["route", "ecosystem", "cache"],
            ),
            upstream_requests: counters(
                &registry,
                "pkgmirror_upstream_requests_total",
                "Requests sent to upstreams, by upstream host and outcome (status class, timeout or error).",
                &["upstream", "outcome"],
            ),
            upstream_duration: histograms(
                &registry,
                "pkgmirror_upstream_request_duration_seconds",
                "Time from sending a request to an upstream to its response head.",
                &["upstream"],
            ),
            upstream_bytes: counters(
                &registry,
                "pkgmirror_upstream_received_bytes_total",
                "Body bytes received from upstreams (pages and files).",
                &["upstream"],
            ),
            singleflight_joins: counters(
                &registry,
                "pkgmirror_singleflight_joins_total",
                "Requests that joined a page refresh or a download under way instead of asking the upstream themselves.",
                &["kind"],
            ),
            s3_operations: counters(
                &registry,
                "pkgmirror_s3_operations_total",
                "S3 operations, by operation and outcome.",
                &["operation", "outcome"],
            ),
            refreshes_ahead: registered(
                &registry,
                IntCounter::new(
                    "pkgmirror_refreshes_ahead_total",
                    "Fresh pages revalidated in the background near the end of their lifetime (pypi.refresh_ahead).",
                )
                .expect("a valid counter"),
            ),
            registry,
        }
    }

    /// One answered request.
    pub fn request(&self, route: RouteGroup, method: &str, status: u16, elapsed: Duration) {
        let method = match method {
            "GET" | "HEAD" | "POST" | "DELETE" | "PUT" | "OPTIONS" => method,
            _ => "other",
        };
        let status = status.to_string();
        self.requests
            .with_label_values(&[route.name, route.ecosystem, method, status.as_str()])
            .inc();
        self.request_duration
            .with_label_values(&[route.name, route.ecosystem])
            .observe(elapsed.as_secs_f64());
    }

    /// Body bytes sent for one request (counted when the body is done or dropped).
    pub fn served(&self, route: RouteGroup, cache: &'static str, bytes: u64) {
        self.served_bytes
            .with_label_values(&[route.name, route.ecosystem, cache])
            .inc_by(bytes);
    }

    /// One request to an upstream: its outcome and how long its response head took.
    pub fn upstream_request(&self, upstream: &str, outcome: UpstreamOutcome, elapsed: Duration) {
        self.upstream_requests
            .with_label_values(&[upstream, outcome.as_str()])
            .inc();
        self.upstream_duration
            .with_label_values(&[upstream])
            .observe(elapsed.as_secs_f64());
    }

    /// The counter of body bytes read from `upstream`.
    pub fn upstream_received(&self, upstream: &str) -> IntCounter {
        self.upstream_bytes.with_label_values(&[upstream])
    }

    /// A request that joined work under way instead of starting its own.
    pub fn joined(&self, flight: Flight) {
        let kind = match flight {
            Flight::Page => "page",
            Flight::Download => "download",
        };
        self.singleflight_joins.with_label_values(&[kind]).inc();
    }

    pub fn refreshed_ahead(&self) {
        self.refreshes_ahead.inc();
    }

    /// One S3 operation (`GetObject`, `PutObject`, ...), after the SDK's retries.
    pub fn s3_operation(&self, operation: &str, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.s3_operations.with_label_values(&[operation, outcome]).inc();
    }

    /// Requests answered so far, all routes.
    fn requests_so_far(&self) -> u64 {
        sum_counters(&self.requests)
    }

    /// Body bytes sent so far with the cache outcome `cache`.
    fn served_so_far(&self, cache: &str) -> u64 {
        self.served_bytes
            .collect_sum(|labels| labels.iter().any(|l| l.name() == "cache" && l.value() == cache))
    }

    /// Bytes received from upstreams so far.
    fn upstream_received_so_far(&self) -> u64 {
        sum_counters(&self.upstream_bytes)
    }

    /// Upstream requests so far and the seconds they took in all.
    fn upstream_time_so_far(&self) -> (u64, f64) {
        let mut count = 0;
        let mut seconds = 0.0;
        for family in prometheus::core::Collector::collect(&self.upstream_duration) {
            for metric in family.get_metric() {
                let histogram = metric.get_histogram();
                count += histogram.get_sample_count();
                seconds += histogram.get_sample_sum();
            }
        }
        (count, seconds)
    }
}

fn sum_counters(vec: &IntCounterVec) -> u64 {
    vec.collect_sum(|_| true)
}

/// Sums the members of a counter family whose labels pass `keep`.
trait CollectSum {
    fn collect_sum(&self, keep: impl Fn(&[LabelPair]) -> bool) -> u64;
}

impl CollectSum for IntCounterVec {
    fn collect_sum(&self, keep: impl Fn(&[LabelPair]) -> bool) -> u64 {
        prometheus::core::Collector::collect(self)
            .iter()
            .flat_map(MetricFamily::get_metric)
            .filter(|metric| keep(metric.get_label()))
            .map(|metric| metric.get_counter().get_value() as u64)
            .sum()
    }
}

/// How often the home page's history takes a reading of the counters.
pub const HISTORY_STEP: std::time::Duration = std::time::Duration::from_secs(300);
/// Readings kept: 24 hours of them, and the one before.
const HISTORY_READINGS: usize = 24 * 3600 / 300 + 1;

/// The counters the home page's charts are drawn from, at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reading {
    /// Unix seconds.
    pub at: u64,
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    /// Body bytes sent of cache hits.
    pub served_from_cache: u64,
    /// Body bytes received from upstreams.
    pub fetched_upstream: u64,
    pub upstream_requests: u64,
    pub upstream_seconds: f64,
}

impl Metrics {
    /// A reading of the event counters now, with the cache's `hits` and `misses`.
    pub fn reading(&self, at: u64, hits: u64, misses: u64) -> Reading {
        let (upstream_requests, upstream_seconds) = self.upstream_time_so_far();
        Reading {
            at,
            requests: self.requests_so_far(),
            hits,
            misses,
            served_from_cache: self.served_so_far("hit"),
            fetched_upstream: self.upstream_received_so_far(),
            upstream_requests,
            upstream_seconds,
        }
    }
}

/// The last 24 hours of readings, one every [`HISTORY_STEP`] since start (in memory: a restart
/// starts it afresh).
#[derive(Debug, Default)]
pub struct History(std::sync::Mutex<std::collections::VecDeque<Reading>>);

impl History {
    pub fn record(&self, reading: Reading) {
        let mut readings = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        readings.push_back(reading);
        while readings.len() > HISTORY_READINGS {
            readings.pop_front();
        }
    }

    /// The readings kept, then `now`.
    pub fn with(&self, now: Reading) -> Vec<Reading> {
        let readings = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        readings.iter().copied().chain(std::iter::once(now)).collect()
    }
}

/// The cache label of a response with this `X-Cache` value (`none` for a response without one).
pub fn cache_label(x_cache: Option<&str>) -> &'static str {
    match x_cache {
        Some("hit") => "hit",
        Some("miss") => "miss",
        Some("stale") => "stale",
        _ => "none",
    }
}

/// A request's route group and ecosystem, as the request metrics label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteGroup {
    pub name: &'static str,
    pub ecosystem: &'static str,
}

/// Work that concurrent requests share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flight {
    /// A page refresh (single-flight).
    Page,
    /// A file download (one upstream fetch, streamed to every request that wants the file).
    Download,
}

/// How a request to an upstream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamOutcome {
    /// An answer with this status.
    Status(u16),
    Timeout,
    /// No answer: refused, reset, a TLS or DNS failure.
    Error,
}

impl UpstreamOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Status(200..=299) => "2xx",
            Self::Status(300..=399) => "3xx",
            Self::Status(400..=499) => "4xx",
            Self::Status(_) => "5xx",
            Self::Timeout => "timeout",
            Self::Error => "error",
        }
    }
}

/// The label an upstream's requests carry: its host and port, never its credentials or path.
pub fn upstream_label(url: &url::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => "unknown".to_owned(),
    }
}

/// State metrics read at scrape time, added family by family.
#[derive(Default)]
pub struct Families(Vec<MetricFamily>);

impl Families {
    /// A counter sample; samples of one name make one family. Counter names end in `_total`.
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: u64) {
        let mut counter = Counter::default();
        counter.set_value(value as f64);
        let mut metric = Metric::from_label(label_pairs(labels));
        metric.set_counter(counter);
        self.push(name, help, MetricType::COUNTER, metric);
    }

    /// A gauge sample; samples of one name make one family.
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        let mut gauge = Gauge::default();
        gauge.set_value(value);
        let mut metric = Metric::from_label(label_pairs(labels));
        metric.set_gauge(gauge);
        self.push(name, help, MetricType::GAUGE, metric);
    }

    fn push(&mut self, name: &str, help: &str, kind: MetricType, metric: Metric) {
        if let Some(family) = self.0.iter_mut().find(|f| f.name() == name) {
            family.mut_metric().push(metric);
            return;
        }
        let mut family = MetricFamily::default();
        family.set_name(name.to_owned());
        family.set_help(help.to_owned());
        family.set_field_type(kind);
        family.set_metric(vec![metric]);
        self.0.push(family);
    }
}

fn label_pairs(labels: &[(&str, &str)]) -> Vec<LabelPair> {
    labels
        .iter()
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name((*name).to_owned());
            pair.set_value((*value).to_owned());
            pair
        })
        .collect()
}

/// Which exposition format a scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the `Accept` header names it (Prometheus lists it first), else text.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(accept)
                if accept
                    .to_ascii_lowercase()
                    .contains("application/openmetrics-text") =>
            {
                Self::OpenMetrics
            }
            _ => Self::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Text => TEXT_CONTENT_TYPE,
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// The event metrics and `state`, sorted by name, in `format`.
pub fn render(state: Families, format: Format) -> String {
    let mut families = METRICS.registry.gather();
    families.extend(state.0);
    families.sort_by(|a, b| a.name().cmp(b.name()));
    match format {
        Format::Text => prometheus::TextEncoder::new()
            .encode_to_string(&families)
            // The encoder fails only on a family without samples or a malformed one: the
            // registry gathers none, and `Families` makes none.
            .unwrap_or_else(|e| format!("# the metrics could not be encoded: {e}\n")),
        Format::OpenMetrics => openmetrics(&families),
    }
}

/// OpenMetrics 1.0 text: the families as the text format writes them, but a counter family is
/// named without its `_total`, `unknown` stands for untyped, and `# EOF` ends it.
fn openmetrics(families: &[MetricFamily]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for family in families {
        let name = family.name();
        let kind = family.get_field_type();
        let (base, kind_name) = match kind {
            MetricType::COUNTER => (name.strip_suffix("_total").unwrap_or(name), "counter"),
            MetricType::GAUGE => (name, "gauge"),
            MetricType::HISTOGRAM => (name, "histogram"),
            MetricType::SUMMARY => (name, "summary"),
            MetricType::UNTYPED => (name, "unknown"),
        };
        let _ = writeln!(out, "# TYPE {base} {kind_name}");
        if !family.help().is_empty() {
            let _ = writeln!(out, "# HELP {base} {}", escape(family.help()));
        }
        for metric in family.get_metric() {
            let labels = metric.get_label();
            match kind {
                MetricType::COUNTER => {
                    sample(
                        &mut out,
                        &format!("{base}_total"),
                        labels,
                        None,
                        metric.get_counter().get_value(),
                    );
                }
                MetricType::GAUGE => sample(&mut out, base, labels, None, metric.get_gauge().get_value()),
                // Neither the registry nor `Families` makes untyped metrics.
                MetricType::UNTYPED => {}
                MetricType::HISTOGRAM => {
                    let histogram = metric.get_histogram();
                    let bucket = format!("{base}_bucket");
                    let mut infinite_seen = false;
                    for b in histogram.get_bucket() {
                        infinite_seen |= b.upper_bound() == f64::INFINITY;
                        let le = canonical_float(b.upper_bound());
                        sample(
                            &mut out,
                            &bucket,
                            labels,
                            Some(("le", &le)),
                            b.cumulative_count() as f64,
                        );
                    }
                    let count = histogram.get_sample_count() as f64;
                    if !infinite_seen {
                        sample(&mut out, &bucket, labels, Some(("le", "+Inf")), count);
                    }
                    sample(&mut out, &format!("{base}_count"), labels, None, count);
                    sample(
                        &mut out,
                        &format!("{base}_sum"),
                        labels,
                        None,
                        histogram.get_sample_sum(),
                    );
                }
                MetricType::SUMMARY => {
                    let summary = metric.get_summary();
                    for q in summary.get_quantile() {
                        let quantile = canonical_float(q.quantile());
                        sample(&mut out, base, labels, Some(("quantile", &quantile)), q.value());
                    }
                    sample(
                        &mut out,
                        &format!("{base}_count"),
                        labels,
                        None,
                        summary.sample_count() as f64,
                    );
                    sample(
                        &mut out,
                        &format!("{base}_sum"),
                        labels,
                        None,
                        summary.sample_sum(),
                    );
                }
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

fn sample(out: &mut String, name: &str, labels: &[LabelPair], extra: Option<(&str, &str)>, value: f64) {
    use std::fmt::Write;
    out.push_str(name);
    let pairs = labels.iter().map(|l| (l.name(), l.value())).chain(extra);
    let mut first = true;
    for (label, value) in pairs {
        out.push(if first { '{' } else { ',' });
        first = false;
        let _ = write!(out, "{label}=\"{}\"", escape(value));
    }
    if !first {
        out.push('}');
    }
    let _ = writeln!(out, " {}", canonical_float(value));
}

/// A number as OpenMetrics writes it: `1.0` rather than `1` for a bucket bound (the spec asks
/// for canonical bounds), `+Inf`, `-Inf`, `NaN`.
fn canonical_float(value: f64) -> String {
    if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else if value.is_nan() {
        "NaN".to_owned()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.1}")
    } else {
        value.to_string()
    }
}

/// Escapes a label value or help text: backslash, double quote, line feed.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_family_is_defined_once_and_validly() {
        let _ = &*METRICS;
        let names: Vec<String> = METRICS
            .registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| n.starts_with("pkgmirror_") || n.starts_with("process_")),
            "{names:?}"
        );
    }

    #[test]
    fn openmetrics_names_counters_without_total_and_ends_with_eof() {
        let mut state = Families::default();
        state.counter("demo_lookups_total", "Lookups.", &[("outcome", "hit")], 3);
        state.counter("demo_lookups_total", "Lookups.", &[("outcome", "miss")], 1);
        state.gauge("demo_bytes", "Bytes \"stored\"\nhere.", &[("path", "a\\b")], 1.5);
        let mut families = state.0;
        let histogram = HistogramVec::new(
            HistogramOpts::new("demo_seconds", "Time.").buckets(vec![0.5, 1.0]),
            &["x"],
        )
        .unwrap();
        histogram.with_label_values(&["y"]).observe(0.7);
        families.extend(prometheus::core::Collector::collect(&histogram));
        let text = openmetrics(&families);
        assert_eq!(
            text,
            "# TYPE demo_lookups counter\n# HELP demo_lookups Lookups.\n\
             demo_lookups_total{outcome=\"hit\"} 3.0\ndemo_lookups_total{outcome=\"miss\"} 1.0\n\
             # TYPE demo_bytes gauge\n# HELP demo_bytes Bytes \\\"stored\\\"\\nhere.\n\
             demo_bytes{path=\"a\\\\b\"} 1.5\n\
             # TYPE demo_seconds histogram\n# HELP demo_seconds Time.\n\
             demo_seconds_bucket{x=\"y\",le=\"0.5\"} 0.0\ndemo_seconds_bucket{x=\"y\",le=\"1.0\"} 1.0\n\
             demo_seconds_bucket{x=\"y\",le=\"+Inf\"} 1.0\ndemo_seconds_count{x=\"y\"} 1.0\n\
             demo_seconds_sum{x=\"y\"} 0.7\n# EOF\n"
        );
    }

    #[test]
    fn prometheus_asks_for_openmetrics_and_others_get_text() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::from_accept(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::from_accept(Some("text/plain")), Format::Text);
        assert_eq!(Format::from_accept(None), Format::Text);
    }

    #[test]
    fn upstream_outcomes_and_labels() {
        assert_eq!(UpstreamOutcome::Status(304).as_str(), "3xx");
        assert_eq!(UpstreamOutcome::Status(503).as_str(), "5xx");
        let url = url::Url::parse("https://user:secret@files.example:8443/a/b").unwrap();
        assert_eq!(upstream_label(&url), "files.example:8443");
        let url = url::Url::parse("https://files.example/a").unwrap();
        assert_eq!(upstream_label(&url), "files.example");
    }
}

#[cfg(test)]
mod history_tests {
    use super::*;

    #[test]
    fn the_history_keeps_a_day_of_readings() {
        let history = History::default();
        for at in 0..(HISTORY_READINGS as u64 + 10) {
            history.record(Reading {
                at,
                ..Reading::default()
            });
        }
        let readings = history.with(Reading {
            at: 1_000_000,
            ..Reading::default()
        });
        assert_eq!(readings.len(), HISTORY_READINGS + 1);
        assert_eq!(readings[0].at, 10);
        assert_eq!(readings.last().unwrap().at, 1_000_000);
    }
}
