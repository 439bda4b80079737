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
use crate::hex::hosted::HostedHexPackage;
use crate::hex::{split_tarball_name, tarball_name, validate_package_name};
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
    /// The token that published it (hosted releases).
    publisher: Option<String>,
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
    /// The hosted repository the package is published to, if it is hosted.
    hosted: Option<String>,
}

/// A hosted repository on the packages page.
#[derive(Serialize)]
pub(super) struct HostedRepositoryView {
    name: String,
    fallback: bool,
    packages: Vec<HostedPackageRow>,
}

#[derive(Serialize)]
struct HostedPackageRow {
    name: String,
    href: String,
    releases: usize,
    newest: String,
    publisher: String,
}

/// Every hosted repository with its packages whose name contains `search`.
pub(super) async fn hosted_repositories(
    state: &AppState,
    search: &str,
) -> Result<Vec<HostedRepositoryView>, AppError> {
    let hosted = &state.hex_hosted;
    let mut views = Vec::new();
    for repository in hosted.repositories() {
        let packages = hosted
            .packages(&repository.name)
            .await
            .map_err(|e| AppError::Unavailable(format!("the hosted repository cannot be read: {e}")))?;
        let search = search.to_ascii_lowercase();
        let packages = packages
            .iter()
            .filter(|p| p.name.contains(&search))
            .map(|p| {
                let newest = p
                    .releases
                    .iter()
                    .max_by(|a, b| view::semver_newest_first(&b.version, &a.version));
                HostedPackageRow {
                    href: view::project_href("hex", &p.name),
                    name: p.name.clone(),
                    releases: p.releases.len(),
                    newest: newest.map(|r| r.version.clone()).unwrap_or_default(),
                    publisher: newest.map(|r| r.publisher.clone()).unwrap_or_default(),
                }
            })
            .collect();
        views.push(HostedRepositoryView {
            name: repository.name.clone(),
            fallback: repository.fallback,
            packages,
        });
    }
    Ok(views)
}

/// The page of a package published to the hosted repository `repository`: its releases as the
/// record has them, with who published each.
fn hosted_page(repository: &str, package: &HostedHexPackage, now: u64) -> PackagePage {
    let size: u64 = package.releases.iter().map(|r| r.size).sum();
    let last = package.releases.iter().map(|r| r.published_at).max().unwrap_or(0);
    let mut releases: Vec<ReleaseView> = package
        .releases
        .iter()
        .map(|release| {
            let filename = tarball_name(&package.name, &release.version);
            let published = humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(release.published_at),
            )
            .to_string();
            ReleaseView {
                version: release.version.clone(),
                prerelease: view::is_prerelease(&release.version),
                retired: release.retired.is_some(),
                retirement: release.retired.as_ref().map(|r| match r.message.as_str() {
                    "" => r.reason.clone(),
                    message => format!("{}: {message}", r.reason),
                }),
                published: view::timestamp(release.published_at),
                published_at: Some(published),
                href: view::hosted_hex_tarball_href(repository, &filename),
                filename,
                sha256: Some(release.outer_checksum.clone()),
                inner_checksum: Some(release.inner_checksum.clone()),
                held: None,
                cached: true,
                hits: 0,
                stored_size: view::size(release.size),
                publisher: Some(release.publisher.clone()),
            }
        })
        .collect();
    releases.sort_by(|a, b| view::semver_newest_first(&a.version, &b.version));
    PackagePage {
        package: PackageView {
            display_name: package.name.clone(),
            releases: releases.len() as u64,
            cached_files: releases.len() as u64,
            cached_size: view::size(size),
            recorded: view::relative(last, now),
            recorded_at: view::timestamp(last),
        },
        releases,
        hex_enabled: true,
        hosted: Some(repository.to_owned()),
    }
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
    let now = unix_now();
    // A hosted name is the hosted package alone, whatever the upstream has of that name.
    for repository in state.hex_hosted.repositories() {
        let found = state
            .hex_hosted
            .package(&repository.name, &name)
            .await
            .map_err(|e| AppError::Unavailable(format!("the hosted repository cannot be read: {e}")))?;
        if let Some(package) = found {
            let page = hosted_page(&repository.name, &package, now);
            return Ok(html(
                StatusCode::OK,
                render_in("hex_package.html", "packages", "", Ecosystem::Hex, &page)?,
            ));
        }
    }
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
                publisher: None,
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
        hosted: None,
    };
    Ok(html(
        StatusCode::OK,
        render_in("hex_package.html", "packages", "", Ecosystem::Hex, &page)?,
    ))
}
