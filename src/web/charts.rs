//! The home page's charts: the last 24 hours drawn on the server as inline SVG, from the readings
//! the mirror keeps ([`crate::metrics::History`]). No script, no font, nothing from elsewhere.

use std::fmt::Write;

use crate::metrics::Reading;

/// The span the charts show.
const SPAN_SECS: f64 = 24.0 * 3600.0;
const WIDTH: f64 = 300.0;
const HEIGHT: f64 = 80.0;
/// Room at the top for the largest value's label.
const TOP: f64 = 16.0;

/// One line of a chart: its label and a value per interval (`None`: nothing to show, e.g. a hit
/// ratio without lookups).
pub struct Series {
    pub label: &'static str,
    /// A CSS class that colours the line.
    pub class: &'static str,
    pub points: Vec<(u64, Option<f64>)>,
}

/// A chart ready for the template.
#[derive(serde::Serialize)]
pub struct Chart {
    pub id: &'static str,
    pub title: &'static str,
    /// The latest value, said in words beside the chart.
    pub latest: String,
    pub svg: String,
}

/// What the four charts show, interval by interval, from consecutive readings (the last one
/// taken now).
pub fn charts(readings: &[Reading], now: u64) -> Vec<Chart> {
    let intervals: Vec<(u64, Reading, Reading)> = readings
        .windows(2)
        .filter(|w| w[1].at > w[0].at)
        .map(|w| (w[1].at, w[0], w[1]))
        .collect();
    let per_interval = |f: &dyn Fn(&Reading, &Reading) -> Option<f64>| -> Vec<(u64, Option<f64>)> {
        intervals.iter().map(|(at, a, b)| (*at, f(a, b))).collect()
    };
    let minutes = |a: &Reading, b: &Reading| (b.at - a.at) as f64 / 60.0;
    let requests = per_interval(&|a, b| Some(b.requests.saturating_sub(a.requests) as f64 / minutes(a, b)));
    let hit_ratio = per_interval(&|a, b| {
        let hits = b.hits.saturating_sub(a.hits) as f64;
        let lookups = hits + b.misses.saturating_sub(a.misses) as f64;
        (lookups > 0.0).then(|| 100.0 * hits / lookups)
    });
    let from_cache =
        per_interval(&|a, b| Some(b.served_from_cache.saturating_sub(a.served_from_cache) as f64));
    let from_upstream =
        per_interval(&|a, b| Some(b.fetched_upstream.saturating_sub(a.fetched_upstream) as f64));
    let latency = per_interval(&|a, b| {
        let count = b.upstream_requests.saturating_sub(a.upstream_requests);
        (count > 0).then(|| 1000.0 * (b.upstream_seconds - a.upstream_seconds) / count as f64)
    });
    let latest = |points: &[(u64, Option<f64>)], unit: &dyn Fn(f64) -> String| {
        points
            .iter()
            .rev()
            .find_map(|(_, v)| *v)
            .map_or_else(|| "nothing yet".to_owned(), unit)
    };
    let per_minute = |v: f64| format!("{v:.1} requests/min");
    let percent = |v: f64| format!("{v:.0}% hits");
    let millis = |v: f64| format!("{v:.0} ms");
    vec![
        Chart {
            id: "chart-requests",
            title: "Requests per minute",
            latest: latest(&requests, &per_minute),
            svg: draw(
                "Requests per minute, last 24 hours",
                &[Series {
                    label: "requests",
                    class: "line-a",
                    points: requests.clone(),
                }],
                now,
                &|v| format!("{v:.0}/min"),
            ),
        },
        Chart {
            id: "chart-hit-ratio",
            title: "Cache hit ratio",
            latest: latest(&hit_ratio, &percent),
            svg: draw(
                "Cache hit ratio, last 24 hours",
                &[Series {
                    label: "hit ratio",
                    class: "line-a",
                    points: hit_ratio.clone(),
                }],
                now,
                &|v| format!("{v:.0}%"),
            ),
        },
        Chart {
            id: "chart-bytes",
            title: "Bytes served from the cache and fetched upstream",
            latest: format!(
                "{} from the cache, {} fetched",
                latest(&from_cache, &|v| crate::web::view::size(v as u64)),
                latest(&from_upstream, &|v| crate::web::view::size(v as u64))
            ),
            svg: draw(
                "Bytes served from the cache against bytes fetched upstream, last 24 hours",
                &[
                    Series {
                        label: "from the cache",
                        class: "line-a",
                        points: from_cache,
                    },
                    Series {
                        label: "fetched upstream",
                        class: "line-b",
                        points: from_upstream,
                    },
                ],
                now,
                &|v| crate::web::view::size(v as u64),
            ),
        },
        Chart {
            id: "chart-latency",
            title: "Upstream latency",
            latest: latest(&latency, &millis),
            svg: draw(
                "Average upstream latency to a response head, last 24 hours",
                &[Series {
                    label: "latency",
                    class: "line-b",
                    points: latency,
                }],
                now,
                &|v| format!("{v:.0} ms"),
            ),
        },
    ]
}

/// An SVG line chart of `series` over the 24 hours before `now`; the largest value is labelled
/// with `label`.
fn draw(title: &str, series: &[Series], now: u64, label: &dyn Fn(f64) -> String) -> String {
    let max = series
        .iter()
        .flat_map(|s| s.points.iter().filter_map(|(_, v)| *v))
        .fold(0.0_f64, f64::max);
    let scale = if max > 0.0 { max } else { 1.0 };
    let start = now as f64 - SPAN_SECS;
    let x = |at: u64| ((at as f64 - start) / SPAN_SECS * WIDTH).clamp(0.0, WIDTH);
    let y = |v: f64| HEIGHT - (v / scale) * (HEIGHT - TOP);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{title}" xmlns="http://www.w3.org/2000/svg"><title>{title}</title>"#
    );
    let _ = write!(
        svg,
        r#"<line class="axis" x1="0" y1="{HEIGHT}" x2="{WIDTH}" y2="{HEIGHT}"/><text class="max" x="2" y="11">{}</text><text class="when" x="2" y="{}">24 h ago</text><text class="when" x="{}" y="{}" text-anchor="end">now</text>"#,
        label(max),
        HEIGHT - 3.0,
        WIDTH - 2.0,
        HEIGHT - 3.0,
    );
    for line in series {
        // A gap (no value) ends one polyline and the next value starts another.
        let mut runs: Vec<Vec<String>> = vec![Vec::new()];
        for (at, value) in &line.points {
            match (value, runs.last_mut()) {
                (Some(v), Some(run)) => run.push(format!("{:.1},{:.1}", x(*at), y(*v))),
                _ => runs.push(Vec::new()),
            }
        }
        for run in runs.iter().filter(|run| !run.is_empty()) {
            if run.len() == 1 {
                // A single reading is a dot.
                let (cx, cy) = run[0].split_once(',').unwrap_or(("0", "0"));
                let _ = write!(
                    svg,
                    r#"<circle class="{}" cx="{cx}" cy="{cy}" r="1.5"><title>{}</title></circle>"#,
                    line.class, line.label
                );
            } else {
                let _ = write!(
                    svg,
                    r#"<polyline class="{}" points="{}"><title>{}</title></polyline>"#,
                    line.class,
                    run.join(" "),
                    line.label
                );
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(at: u64, requests: u64, hits: u64, misses: u64) -> Reading {
        Reading {
            at,
            requests,
            hits,
            misses,
            ..Reading::default()
        }
    }

    #[test]
    fn intervals_become_lines_and_gaps() {
        let now = 100_000;
        let readings = [
            reading(now - 600, 0, 0, 0),
            reading(now - 300, 300, 0, 0),
            reading(now, 900, 30, 10),
        ];
        let charts = charts(&readings, now);
        assert_eq!(charts.len(), 4);
        assert_eq!(charts[0].latest, "120.0 requests/min");
        assert_eq!(charts[1].latest, "75% hits");
        // The first interval had no lookups: the hit ratio is a dot, not a line to zero.
        assert!(charts[1].svg.contains("<circle"), "{}", charts[1].svg);
        assert!(
            charts[0].svg.contains("<polyline class=\"line-a\""),
            "{}",
            charts[0].svg
        );
        assert!(
            charts[0]
                .svg
                .contains("aria-label=\"Requests per minute, last 24 hours\"")
        );
        assert!(
            charts[0].svg.contains(">120/min</text>"),
            "the largest value is labelled"
        );
        assert_eq!(charts[3].latest, "nothing yet");
    }

    #[test]
    fn points_sit_on_the_24_hour_axis() {
        let now = 200_000;
        let svg = draw(
            "t",
            &[Series {
                label: "l",
                class: "line-a",
                points: vec![(now - 86_400, Some(0.0)), (now, Some(10.0))],
            }],
            now,
            &|v| format!("{v}"),
        );
        assert!(svg.contains("points=\"0.0,80.0 300.0,16.0\""), "{svg}");
    }
}
