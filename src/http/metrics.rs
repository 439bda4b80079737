//! `GET /metrics`: the event metrics and the state `/health` shows, for Prometheus.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::AppError;
use crate::metrics::{Families, Format};
use crate::state::AppState;

/// `/metrics` on the main port: only with `metrics.token`, and only to a request carrying it.
pub async fn with_token(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AppError> {
    let token = state.metrics_token.current();
    if token.is_empty() {
        return Err(AppError::NotFound(
            "/metrics is not served on this port: set metrics.token to open it here, or \
             metrics.listen to give it an address of its own"
                .into(),
        ));
    }
    let presented = crate::auth::presented_token(&req);
    if !presented.is_some_and(|presented| crate::auth::token_matches(&token, &presented)) {
        return Err(AppError::TokenRequired(
            "/metrics needs metrics.token: send it as a Bearer token or as the password of HTTP Basic auth"
                .into(),
        ));
    }
    scrape(state, req).await
}

/// `/metrics` on `metrics.listen`: open to whoever reaches that address.
pub async fn scrape(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AppError> {
    let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::from_accept(accept);
    let families = state_families(&state).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, format.content_type()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(crate::metrics::render(families, format)))
}

/// What the mirror knows as state, read now.
async fn state_families(state: &AppState) -> Result<Families, AppError> {
    let counts = state.pages.storage_counts().await?;
    let status = state.status().await;
    let counters = state.counters.snapshot();
    let mut f = Families::default();
    f.gauge(
        "pkgmirror_build_info",
        "The running pkgmirror's version (always 1).",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );

    let lookups = "Cache lookups of pages and files, by outcome: served from the cache, fetched, or served stale because the upstream failed.";
    for (outcome, value) in [
        ("hit", counters.hits),
        ("miss", counters.misses),
        ("stale", counters.stale),
    ] {
        f.counter(
            "pkgmirror_cache_lookups_total",
            lookups,
            &[("outcome", outcome)],
            value,
        );
    }
    f.counter(
        "pkgmirror_upstream_errors_total",
        "Lookups an upstream failure answered (stale or an error).",
        &[],
        counters.upstream_errors,
    );
    f.counter(
        "pkgmirror_download_failures_total",
        "File downloads from an upstream that failed (hash mismatches included).",
        &[],
        counters.download_failures,
    );
    f.counter(
        "pkgmirror_hash_mismatches_total",
        "Downloads whose bytes did not have the hash the index gave; never served or kept.",
        &[],
        counters.hash_mismatches,
    );
    f.counter(
        "pkgmirror_served_unstored_total",
        "Downloads served to their clients that the blob store could not keep.",
        &[],
        counters.unstored,
    );
    f.counter(
        "pkgmirror_stored_blobs_total",
        "Blobs written to the blob store (downloads and uploads).",
        &[],
        counters.stored_blobs,
    );
    f.counter(
        "pkgmirror_stored_bytes_total",
        "Bytes of the blobs written to the blob store.",
        &[],
        counters.stored_bytes,
    );
    let held = counters.held_back;
    let held_help = "Distinct files the release policy held back since start, by the check that held them.";
    for (check, value) in [
        ("age", held.age),
        ("date", held.date),
        ("rule", held.rule),
        ("unknown_upload_time", held.unknown_upload_time),
    ] {
        f.counter(
            "pkgmirror_policy_held_back_files_total",
            held_help,
            &[("check", check)],
            value,
        );
    }
    f.gauge(
        "pkgmirror_downloads_in_flight",
        "File downloads from upstreams under way.",
        &[],
        state.downloads.downloads_in_progress() as f64,
    );

    f.gauge(
        "pkgmirror_blob_store_blobs",
        "Blobs the catalogue records as stored.",
        &[],
        counts.catalogue.blobs as f64,
    );
    f.gauge(
        "pkgmirror_blob_store_bytes",
        "Bytes of the blobs the catalogue records as stored.",
        &[],
        counts.catalogue.blob_bytes as f64,
    );
    let evicted_help =
        "Blobs evicted to keep the store (or the tiered store's local tier) within its budget.";
    if let Some(evictor) = &state.evictor {
        f.gauge(
            "pkgmirror_blob_store_budget_bytes",
            "The local blob store's budget (storage.max_size).",
            &[],
            evictor.max_bytes() as f64,
        );
        f.counter(
            "pkgmirror_evicted_blobs_total",
            evicted_help,
            &[],
            evictor.evicted_blobs(),
        );
    }
    if let Some(tier) = state.downloads.tier_stats() {
        f.gauge(
            "pkgmirror_local_tier_blobs",
            "Blobs in the tiered store's local tier.",
            &[],
            tier.blobs as f64,
        );
        f.gauge(
            "pkgmirror_local_tier_bytes",
            "Bytes in the tiered store's local tier.",
            &[],
            tier.bytes as f64,
        );
        f.gauge(
            "pkgmirror_blob_store_budget_bytes",
            "The local tier's budget (storage.max_size).",
            &[],
            tier.max_bytes as f64,
        );
        let fills = "Blobs copied from S3 into the local tier, by outcome.";
        f.counter(
            "pkgmirror_local_tier_fills_total",
            fills,
            &[("outcome", "ok")],
            tier.fills,
        );
        f.counter(
            "pkgmirror_local_tier_fills_total",
            fills,
            &[("outcome", "failed")],
            tier.fill_failures,
        );
        f.counter("pkgmirror_evicted_blobs_total", evicted_help, &[], tier.evicted);
    }
    f.gauge(
        "pkgmirror_storage_up",
        "Whether the blob store works (1) or fails (0).",
        &[("backend", status.storage_backend)],
        if status.storage.is_ok() { 1.0 } else { 0.0 },
    );

    f.gauge(
        "pkgmirror_catalogue_projects",
        "Projects in the catalogue.",
        &[],
        counts.catalogue.projects as f64,
    );
    f.gauge(
        "pkgmirror_catalogue_files",
        "Files in the catalogue.",
        &[],
        counts.catalogue.files as f64,
    );
    let stored_pages = "Pages in the page store: rendered pages and upstream snapshots.";
    f.gauge(
        "pkgmirror_page_store_pages",
        stored_pages,
        &[("kind", "rendered")],
        counts.pages.rendered as f64,
    );
    f.gauge(
        "pkgmirror_page_store_pages",
        stored_pages,
        &[("kind", "snapshot")],
        counts.pages.snapshots as f64,
    );
    f.gauge(
        "pkgmirror_pages_in_memory",
        "Rendered pages held in memory.",
        &[],
        state.pages.l1_entries().await as f64,
    );

    for upstream in &status.upstreams {
        let index = upstream.name.as_str();
        let report = &upstream.report;
        f.gauge(
            "pkgmirror_upstream_up",
            "Whether the index's last contact succeeded (1), or it was not contacted yet (1), or failed (0).",
            &[("index", index), ("role", upstream.role)],
            if report.state.is_failing() { 0.0 } else { 1.0 },
        );
        for state in crate::upstream::IndexState::ALL {
            f.gauge(
                "pkgmirror_upstream_state",
                "The index's state: 1 for the one it is in.",
                &[("index", index), ("state", state.as_str())],
                if state == report.state { 1.0 } else { 0.0 },
            );
        }
        f.gauge(
            "pkgmirror_upstream_breaker_open",
            "Whether the index is left alone after a failure (1: stale copies are served meanwhile).",
            &[("index", index)],
            if report.backing_off { 1.0 } else { 0.0 },
        );
        for member in &upstream.members {
            let labels = [("index", index), ("member", member.url.as_str())];
            f.gauge(
                "pkgmirror_upstream_member_up",
                "Whether a pool member's last contact succeeded or it was not contacted yet (1), or it failed and is left out (0).",
                &labels,
                if member.health.state.is_failing() { 0.0 } else { 1.0 },
            );
            if let Some(latency) = member.latency_ms {
                f.gauge(
                    "pkgmirror_upstream_member_latency_seconds",
                    "A pool member's recent average time to a response head.",
                    &labels,
                    latency / 1000.0,
                );
            }
        }
        f.counter(
            "pkgmirror_upstream_dropped_entries_total",
            "Malformed entries left out of the index's pages.",
            &[("index", index)],
            report.dropped_entries,
        );
    }
    Ok(f)
}
