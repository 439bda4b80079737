//! `GET /health`: enough for a load balancer (status) and for a person (why).

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::error::AppError;
use crate::state::AppState;

pub async fn health(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let counts = state.pages.storage_counts().await?;
    let status = state.status().await;
    let configured = status.upstream_configured;
    let upstreams: Vec<_> = status
        .upstreams
        .iter()
        .map(|upstream| {
            let mut entry = json!(upstream.report);
            entry["url"] = json!(upstream.url);
            entry["role"] = json!(upstream.role);
            entry["members"] = json!(upstream.members);
            entry
        })
        .collect();
    let counters = state.counters.snapshot();
    let lookups = counters.hits + counters.misses;
    let hit_ratio = (lookups > 0).then(|| counters.hits as f64 / lookups as f64);
    let last_eviction = state
        .evictor
        .as_ref()
        .and_then(|evictor| evictor.last_eviction())
        .map(|t| humantime::format_rfc3339_seconds(t).to_string());
    let tier = state.downloads.tier_stats();
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({
            "status": status.status(),
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": state.started.elapsed().as_secs(),
            "upstream_configured": configured,
            "message": if configured { serde_json::Value::Null } else { json!("no upstream configured") },
            "upstreams": upstreams,
            "storage": {
                "backend": status.storage_backend,
                "state": if status.storage.is_ok() { "ok" } else { "failing" },
                "error": status.storage.as_ref().err(),
                // The tiered store's local tier (S3 keeps everything it evicts).
                "local_tier": tier.map(|t| json!({
                    "blobs": t.blobs,
                    "bytes": t.bytes,
                    "max_bytes": t.max_bytes,
                    "fills": t.fills,
                    "fill_failures": t.fill_failures,
                    "evicted": t.evicted,
                })),
            },
            "cache": {
                "projects": counts.catalogue.projects,
                "files": counts.catalogue.files,
                "pages_stored": counts.pages.rendered,
                "snapshots_stored": counts.pages.snapshots,
                "pages_in_memory": state.pages.l1_entries().await,
                "hits": counters.hits,
                "misses": counters.misses,
                "stale": counters.stale,
                "upstream_errors": counters.upstream_errors,
                "blobs": counts.catalogue.blobs,
                "blob_bytes": counts.catalogue.blob_bytes,
                // A local store's budget; S3 and tiered stores report theirs under `storage`.
                "max_bytes": state.evictor.as_ref().map(|evictor| evictor.max_bytes()),
                "hit_ratio": hit_ratio,
                "evicted_blobs": state.evictor.as_ref().map_or(0, |evictor| evictor.evicted_blobs()),
                "last_eviction": last_eviction,
                "downloads_in_progress": state.downloads.downloads_in_progress(),
                "download_failures": counters.download_failures,
                "hash_mismatches": counters.hash_mismatches,
                "served_unstored": counters.unstored,
            },
            "policy": {
                "active": state.policy.current().is_active(),
                // Distinct files held back since start, by the check that held them.
                "held_back": counters.held_back,
            },
        })))
}
