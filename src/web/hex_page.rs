//! A hex package's page: its releases as the catalogue recorded them from the verified registry
//! file, newest first in SemVer order, each with its checksums, retirement, cache state and a
//! download link through the mirror's hex repository.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Serialize;

use super::view;
use super::{UiError, html, render_in};
use crate::cache::{held_back, unix_now};
use crate::ecosystem::Ecosystem;
use crate::error::AppError;
use crate::hex::{split_tarball_name, validate_package_name};
use crate::state::AppState;

#[derive(Serialize)]
struct ReleaseView {
    version: String,
    prerelease: bool,
    retired: bool,
    /// "{reason}: {message}" or just the reason, as recorded.
    retirement: Option<String>,
    /// The publication time as pages show times; `published_at` is the recorded RFC 3339 text.
    published: String,
    published_at: Option<String>,
    filename: String,
    href: String,
    sha256: Option<String>,
    inner_checksum: Option<String>,
    /// Why the release policy holds it back, and when it becomes eligible.
    held: Option<String>,
    cached: bool,
    hits: u64,
    stored_size: String,
}

#[derive(Serialize)]
struct PackageView {
    display_name: String,
    releases: u64,
    cached_files: u64,
    cached_size: String,
    recorded: String,
    recorded_at: String,
}

#[derive(Serialize)]
struct PackagePage {
    package: PackageView,
    releases: Vec<ReleaseView>,
    hex_enabled: bool,
}

/// `GET /packages/hex/{name}`.
pub async fn package(state: web::Data<AppState>, name: String) -> Result<HttpResponse, UiError> {
    validate_package_name(&name).map_err(|e| {
        UiError::with_search_in(
            AppError::BadRequest(format!("'{name}' is not a hex package name: {e}")),
            Ecosystem::Hex,
            &name,
        )
    })?;
    let Some(detail) = state.explorer.project(Ecosystem::Hex, name.clone()).await? else {
        return Err(UiError::with_search_in(
            AppError::NotFound(format!(
                "hex package '{name}' is not in pkgmirror's catalogue: no client has asked the mirror for it yet"
            )),
            Ecosystem::Hex,
            &name,
        ));
    };
    let policy = state.policy.current();
    let now = unix_now();
    let mut releases: Vec<ReleaseView> = detail
        .files
        .into_iter()
        .map(|file| {
            let record = file.file;
            let held = held_back(&policy, Ecosystem::Hex, &name, &record, now).map(|hold| hold.message);
            let version = record
                .version
                .clone()
                .or_else(|| {
                    split_tarball_name(&record.filename)
                        .ok()
                        .map(|(_, version)| version.to_owned())
                })
                .unwrap_or_else(|| record.filename.clone());
            ReleaseView {
                prerelease: view::is_prerelease(&version),
                retired: record.yanked.is_some(),
                retirement: record.yanked.filter(|r| !r.is_empty()),
                published: record
                    .upload_time
                    .as_deref()
                    .map_or_else(|| "—".into(), view::rfc3339_timestamp),
                published_at: record.upload_time,
                href: view::hex_tarball_href(&record.filename),
                filename: record.filename,
                sha256: record.sha256,
                inner_checksum: record.inner_checksum,
                held,
                cached: file.cached,
                hits: file.hits,
                stored_size: file.stored_size.map_or_else(|| "—".into(), view::size),
                version,
            }
        })
        .collect();
    releases.sort_by(|a, b| view::semver_newest_first(&a.version, &b.version));
    let summary = detail.summary;
    let page = PackagePage {
        package: PackageView {
            display_name: summary.display_name,
            releases: summary.files,
            cached_files: summary.cached_files,
            cached_size: view::size(summary.cached_bytes),
            recorded: view::relative(summary.fetched_at, now),
            recorded_at: view::timestamp(summary.fetched_at),
        },
        releases,
        hex_enabled: state.hex.is_some(),
    };
    Ok(html(
        StatusCode::OK,
        render_in("hex_package.html", "packages", "", Ecosystem::Hex, &page)?,
    ))
}
