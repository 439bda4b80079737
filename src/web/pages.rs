//! The pages anyone may read: home, the package list and one PyPI project (a hex package's page
//! is in `hex_page.rs`).

use std::collections::{BTreeMap, HashMap};

use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::{UiError, hex_page, html, render, render_in, view};
use crate::cache::explorer::ListingRequest;
use crate::cache::{held_back, unix_now};
use crate::ecosystem::Ecosystem;
use crate::error::AppError;
use crate::pypi::name::{normalize, validate_project_name};
use crate::state::{AppState, external_url};
use crate::storage::browse::ProjectSort;

/// Projects per page of the package list.
const PAGE_SIZE: u64 = 50;
/// Downloads listed on the home page.
const RECENT_DOWNLOADS: u64 = 10;
/// The longest search text taken; longer names do not exist.
const MAX_SEARCH_LEN: usize = 200;
/// Page numbers beyond this are refused (50 million projects).
const MAX_PAGE: u64 = 1_000_000;

#[derive(Serialize)]
struct UpstreamView {
    url: String,
    role: &'static str,
    state: &'static str,
    last_success: Option<String>,
    last_error: Option<String>,
    members: Vec<MemberView>,
}

/// A member of an upstream pool.
#[derive(Serialize)]
struct MemberView {
    url: String,
    state: &'static str,
    latency: Option<String>,
}

#[derive(Serialize)]
struct StorageView {
    backend: &'static str,
    state: &'static str,
    error: Option<String>,
}

#[derive(Serialize)]
struct BudgetView {
    used_bytes: u64,
    max_bytes: u64,
    max: String,
    percent: String,
}

#[derive(Serialize)]
struct Totals {
    projects: u64,
    files: u64,
    blobs: u64,
    bytes: String,
    budget: Option<BudgetView>,
    hit_ratio: Option<String>,
    hits: u64,
    misses: u64,
    stale: u64,
    /// Files the release policy held back since start, when a policy is in force.
    held_back: Option<crate::cache::HeldCounts>,
}

#[derive(Serialize)]
struct DownloadView {
    project: String,
    project_href: String,
    filename: String,
    size: String,
    stored: String,
}

#[derive(Serialize)]
struct Snippet {
    id: &'static str,
    title: &'static str,
    text: String,
}

#[derive(Serialize)]
struct Home {
    status: &'static str,
    upstream_configured: bool,
    upstreams: Vec<UpstreamView>,
    storage: StorageView,
    totals: Totals,
    recent: Vec<DownloadView>,
    /// The last 24 hours, drawn.
    charts: Vec<super::charts::Chart>,
    /// How to point each family of tools at this server: PyPI's, then hex's while it is on.
    setups: Vec<Setup>,
}

/// One family of tools, the URL they use and how each is configured.
#[derive(Serialize)]
struct Setup {
    /// The id of its introduction, if tests or links need one.
    id: Option<&'static str>,
    tools: &'static str,
    url: String,
    /// Said after the URL.
    note: &'static str,
    snippets: Vec<Snippet>,
}

/// `GET /`.
pub async fn home(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, UiError> {
    let now = unix_now();
    let health = state.status().await;
    let status = health.status();
    let upstream_configured = health.upstream_configured;
    let (backend, storage) = (health.storage_backend, health.storage);
    let upstreams: Vec<UpstreamView> = health
        .upstreams
        .into_iter()
        .map(|upstream| UpstreamView {
            url: upstream.url,
            role: upstream.role,
            state: upstream.report.state.as_str(),
            last_success: upstream.report.last_success,
            last_error: upstream.report.last_error,
            // A pool's members; an upstream with one URL shows none.
            members: if upstream.members.len() > 1 {
                upstream
                    .members
                    .into_iter()
                    .map(|member| MemberView {
                        url: member.url,
                        state: member.health.state.as_str(),
                        latency: member.latency_ms.map(|ms| format!("{ms:.0} ms")),
                    })
                    .collect()
            } else {
                Vec::new()
            },
        })
        .collect();
    let counts = state.pages.storage_counts().await?.catalogue;
    let counters = state.counters.snapshot();
    let lookups = counters.hits + counters.misses;
    // A local store's budget covers every blob; a tiered store's covers its local tier.
    let budget = match (&state.evictor, state.downloads.tier_stats()) {
        (Some(evictor), _) => Some((counts.blob_bytes, evictor.max_bytes())),
        (None, Some(tier)) => Some((tier.bytes, tier.max_bytes)),
        (None, None) => None,
    };
    let recent = state
        .explorer
        .recent_downloads(RECENT_DOWNLOADS)
        .await?
        .into_iter()
        .map(|d| DownloadView {
            project_href: view::project_href(&d.ecosystem, &d.project),
            project: d.project,
            filename: d.filename,
            size: view::size(d.size),
            stored: view::relative(d.stored_at, now),
        })
        .collect();
    let index_url = external_url(&state, &req, "/simple/");
    let hex_url = state.hex.is_some().then(|| external_url(&state, &req, "/hex"));
    let charts = super::charts::charts(&state.history.with(state.reading()), now);
    let page = Home {
        status,
        upstream_configured,
        upstreams,
        charts,
        storage: StorageView {
            backend,
            state: if storage.is_ok() { "ok" } else { "failing" },
            error: storage.err(),
        },
        totals: Totals {
            projects: counts.projects,
            files: counts.files,
            blobs: counts.blobs,
            bytes: view::size(counts.blob_bytes),
            budget: budget.map(|(used, max)| BudgetView {
                used_bytes: used,
                max_bytes: max,
                max: view::size(max),
                percent: view::percent(if max == 0 { 1.0 } else { used as f64 / max as f64 }),
            }),
            hit_ratio: (lookups > 0).then(|| view::percent(counters.hits as f64 / lookups as f64)),
            hits: counters.hits,
            misses: counters.misses,
            stale: counters.stale,
            held_back: state.policy.current().is_active().then_some(counters.held_back),
        },
        recent,
        setups: std::iter::once(Setup {
            id: None,
            tools: "your Python tools",
            snippets: setup_snippets(&index_url),
            url: index_url,
            note: "",
        })
        .chain(hex_url.map(|url| Setup {
            id: Some("hex-setup"),
            tools: "mix and rebar3",
            snippets: hex_snippets(&url),
            url,
            note: ", the mirror of the hex repository",
        }))
        .collect(),
    };
    Ok(html(StatusCode::OK, render("home.html", "home", "", &page)?))
}

/// How each client is pointed at `index_url` (this server's `/simple/`).
fn setup_snippets(index_url: &str) -> Vec<Snippet> {
    // pip refuses an index over plain http unless its host is trusted (localhost excepted).
    let host = url::Url::parse(index_url)
        .ok()
        .filter(|url| url.scheme() == "http")
        .and_then(|url| url.host_str().map(str::to_owned))
        .filter(|host| host != "localhost" && host != "127.0.0.1" && host != "[::1]");
    let (pip_conf_trust, pip_flag_trust) = match &host {
        Some(host) => (
            format!("\ntrusted-host = {host}"),
            format!(" --trusted-host {host}"),
        ),
        None => (String::new(), String::new()),
    };
    vec![
        Snippet {
            id: "pip",
            title: "pip (pip.conf)",
            text: format!("[global]\nindex-url = {index_url}{pip_conf_trust}"),
        },
        Snippet {
            id: "pip-flag",
            title: "pip (one command)",
            text: format!("pip install --index-url {index_url}{pip_flag_trust} <package>"),
        },
        Snippet {
            id: "uv-env",
            title: "uv (environment)",
            text: format!("export UV_DEFAULT_INDEX={index_url}"),
        },
        Snippet {
            id: "uv-toml",
            title: "uv (uv.toml)",
            text: format!("[[index]]\nurl = \"{index_url}\"\ndefault = true"),
        },
        Snippet {
            id: "poetry",
            title: "poetry",
            text: format!("poetry source add --priority=primary pkgmirror {index_url}"),
        },
        Snippet {
            id: "pdm",
            title: "pdm",
            text: format!("pdm config pypi.url {index_url}"),
        },
    ]
}

/// How mix and rebar3 are pointed at `hex_url` (this server's `/hex`, without a trailing slash).
fn hex_snippets(hex_url: &str) -> Vec<Snippet> {
    vec![
        Snippet {
            id: "mix",
            title: "mix (one command)",
            text: format!("HEX_MIRROR={hex_url} mix deps.get"),
        },
        Snippet {
            id: "mix-config",
            title: "mix (hex config, every project)",
            text: format!("mix hex.config mirror_url {hex_url}"),
        },
        Snippet {
            id: "rebar3",
            title: "rebar3 (one command)",
            text: format!("HEX_CDN={hex_url} rebar3 get-deps"),
        },
        Snippet {
            id: "rebar3-config",
            title: "rebar3 (~/.config/rebar3/rebar.config)",
            text: format!("{{rebar_packages_cdn, \"{hex_url}\"}}."),
        },
    ]
}

#[derive(Deserialize)]
pub struct PackagesQuery {
    ecosystem: Option<String>,
    q: Option<String>,
    sort: Option<String>,
    /// Parsed by the handler, so a malformed number gets the UI's error page.
    page: Option<String>,
}

#[derive(Serialize)]
struct ProjectRow {
    display_name: String,
    href: String,
    files: u64,
    cached_files: u64,
    cached_size: String,
    last_access: String,
    /// The hosted index it comes from, if any.
    hosted: Option<String>,
}

#[derive(Serialize)]
struct SortLink {
    label: &'static str,
    href: String,
    current: bool,
}

#[derive(Serialize)]
struct EcosystemTab {
    label: &'static str,
    href: String,
    current: bool,
}

#[derive(Serialize)]
struct Pager {
    first: u64,
    last: u64,
    prev_href: Option<String>,
    next_href: Option<String>,
}

#[derive(Serialize)]
struct Packages {
    /// What the listed ecosystem calls its entries: "project" or "package".
    noun: &'static str,
    /// What its file count counts: "Files" (PyPI) or "Releases" (hex, one tarball each).
    listed_label: &'static str,
    ecosystems: Vec<EcosystemTab>,
    search: String,
    /// The page asked for lies beyond the last project.
    past_end: bool,
    total: u64,
    projects: Vec<ProjectRow>,
    sorts: Vec<SortLink>,
    pager: Pager,
    /// The hosted hex repositories and their packages (on the hex tab).
    hosted_hex: Vec<super::hex_page::HostedRepositoryView>,
}

/// `GET /packages?ecosystem=&q=&sort=&page=`.
pub async fn packages(
    state: web::Data<AppState>,
    query: web::Query<PackagesQuery>,
) -> Result<HttpResponse, UiError> {
    let query = query.into_inner();
    let ecosystem = match query.ecosystem.as_deref().map(str::trim) {
        None | Some("") => Ecosystem::Pypi,
        Some(text) => Ecosystem::parse(text)
            .ok_or_else(|| AppError::BadRequest(format!("'{text}' is not an ecosystem: use pypi or hex")))?,
    };
    let search: String = query
        .q
        .unwrap_or_default()
        .trim()
        .chars()
        .take(MAX_SEARCH_LEN)
        .collect();
    let sort = match query.sort.as_deref() {
        None | Some("") => ProjectSort::Name,
        Some(text) => ProjectSort::parse(text).ok_or_else(|| {
            AppError::BadRequest(format!("cannot sort by '{text}': use name, last_access or size"))
        })?,
    };
    let page = match query.page.as_deref().map(str::trim) {
        None | Some("") => 1,
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|page| *page <= MAX_PAGE)
            .ok_or_else(|| {
                AppError::BadRequest(format!(
                    "'{text}' is not a page number: use a whole number from 1 to {MAX_PAGE}"
                ))
            })?
            .max(1),
    };
    let offset = (page - 1) * PAGE_SIZE;
    let listing = state
        .explorer
        .projects(ListingRequest {
            ecosystem,
            contains: ecosystem.search_fragment(&search),
            sort,
            offset,
            limit: PAGE_SIZE,
        })
        .await?;
    let now = unix_now();
    let shown = listing.projects.len() as u64;
    let projects = listing
        .projects
        .into_iter()
        .map(|p| ProjectRow {
            href: view::project_href(&p.ecosystem, &p.name),
            display_name: p.display_name,
            files: p.files,
            cached_files: p.cached_files,
            cached_size: view::size(p.cached_bytes),
            last_access: p
                .last_access
                .map_or_else(|| "—".into(), |at| view::relative(at, now)),
            hosted: p.hosted,
        })
        .collect();
    let sorts = [
        (ProjectSort::Name, "name"),
        (ProjectSort::LastAccess, "last access"),
        (ProjectSort::CachedSize, "cached size"),
    ]
    .into_iter()
    .map(|(option, label)| SortLink {
        label,
        href: view::packages_href(ecosystem, &search, Some(option), None),
        current: option == sort,
    })
    .collect();
    // Another ecosystem keeps the search and the order, from its first page.
    let ecosystems = Ecosystem::ALL
        .into_iter()
        .map(|option| EcosystemTab {
            label: option.label(),
            href: view::packages_href(option, &search, Some(sort), None),
            current: option == ecosystem,
        })
        .collect();
    // A page past the end links back to the last page that has rows.
    let last_page = listing.total.div_ceil(PAGE_SIZE).max(1);
    let pager = Pager {
        first: if shown == 0 { 0 } else { offset + 1 },
        last: offset + shown,
        prev_href: (page > 1)
            .then(|| view::packages_href(ecosystem, &search, Some(sort), Some((page - 1).min(last_page)))),
        next_href: (offset + shown < listing.total)
            .then(|| view::packages_href(ecosystem, &search, Some(sort), Some(page + 1))),
    };
    let body = render_in(
        "packages.html",
        "packages",
        &search,
        ecosystem,
        &Packages {
            noun: ecosystem.noun(),
            listed_label: match ecosystem {
                Ecosystem::Pypi => "Files",
                Ecosystem::Hex => "Releases",
            },
            ecosystems,
            search: search.clone(),
            past_end: shown == 0 && listing.total > 0,
            total: listing.total,
            projects,
            sorts,
            pager,
            hosted_hex: match ecosystem {
                Ecosystem::Hex => super::hex_page::hosted_repositories(&state, &search).await?,
                Ecosystem::Pypi => Vec::new(),
            },
        },
    )?;
    Ok(html(StatusCode::OK, body))
}

#[derive(Serialize)]
struct FileView {
    filename: String,
    href: String,
    size: String,
    sha256: Option<String>,
    requires_python: String,
    upload_time: String,
    /// The name of the token that uploaded it (hosted files).
    uploader: Option<String>,
    yanked: bool,
    yanked_reason: Option<String>,
    /// Why the release policy holds it back, and when it becomes eligible.
    held: Option<String>,
    cached: bool,
    hits: u64,
}

#[derive(Serialize)]
struct VersionView {
    version: String,
    files: Vec<FileView>,
}

#[derive(Serialize)]
struct ProjectView {
    display_name: String,
    status: Option<String>,
    files: u64,
    cached_files: u64,
    cached_size: String,
    fetched: String,
    expires: String,
    expired: bool,
    index_href: String,
    admin_href: String,
    /// The hosted index the project lives in, if it is hosted.
    hosted: Option<String>,
}

#[derive(Serialize)]
struct ProjectPage {
    project: ProjectView,
    versions: Vec<VersionView>,
}

/// Files whose name gives no version are listed under this heading.
const OTHER_FILES: &str = "Other files";

/// `GET /packages/{ecosystem}/{project}`.
pub async fn project(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, UiError> {
    let (ecosystem, raw) = path.into_inner();
    match Ecosystem::parse(&ecosystem) {
        Some(Ecosystem::Pypi) => {}
        Some(Ecosystem::Hex) => return hex_page::package(state, raw).await,
        None => {
            return Err(AppError::NotFound(format!(
                "pkgmirror has no '{ecosystem}' packages; it mirrors pypi and hex"
            ))
            .into());
        }
    }
    validate_project_name(&raw).map_err(|e| {
        UiError::with_search(
            AppError::BadRequest(format!("'{raw}' is not a project name: {e}")),
            &raw,
        )
    })?;
    let name = normalize(&raw);
    if name != raw {
        return Ok(HttpResponse::MovedPermanently()
            .insert_header((LOCATION, view::project_href(&ecosystem, &name)))
            .finish());
    }
    let Some(detail) = state.explorer.project(Ecosystem::Pypi, name.clone()).await? else {
        return Err(UiError::with_search(
            AppError::NotFound(format!(
                "project '{name}' is not in pkgmirror's catalogue: no client has asked the mirror for it yet"
            )),
            &name,
        ));
    };
    let times = state.pages.page_times(&name).await?;
    // Who uploaded each file is in the hosted record, not the catalogue.
    let uploaders: HashMap<String, String> = match &detail.summary.hosted {
        Some(index) => state
            .hosted
            .project(index, &name)
            .await
            .map_err(|e| AppError::Unavailable(format!("the hosted index cannot be read: {e}")))?
            .map(|record| {
                record
                    .files
                    .into_iter()
                    .map(|f| (f.filename, f.uploader))
                    .collect()
            })
            .unwrap_or_default(),
        None => HashMap::new(),
    };
    let now = unix_now();
    let policy = state.policy.current();
    let mut by_version: BTreeMap<String, Vec<FileView>> = BTreeMap::new();
    for file in detail.files {
        let record = file.file;
        let held = held_back(&policy, Ecosystem::Pypi, &name, &record, now).map(|hold| hold.message);
        by_version
            .entry(record.version.clone().unwrap_or_else(|| OTHER_FILES.into()))
            .or_default()
            .push(FileView {
                href: view::file_href(&name, &record.filename),
                size: record
                    .size
                    .or(file.stored_size)
                    .map_or_else(|| "—".into(), view::size),
                sha256: record.sha256,
                requires_python: record.requires_python.unwrap_or_default(),
                upload_time: record.upload_time.unwrap_or_default(),
                uploader: uploaders.get(&record.filename).cloned(),
                yanked: record.yanked.is_some(),
                yanked_reason: record.yanked.filter(|r| !r.is_empty()),
                held,
                cached: file.cached,
                hits: file.hits,
                filename: record.filename,
            });
    }
    let mut versions: Vec<VersionView> = by_version
        .into_iter()
        .map(|(version, files)| VersionView { version, files })
        .collect();
    versions.sort_by(
        |a, b| match (a.version == OTHER_FILES, b.version == OTHER_FILES) {
            (false, false) => view::newest_first(&a.version, &b.version),
            (a_other, b_other) => a_other.cmp(&b_other),
        },
    );
    let summary = detail.summary;
    let (fetched_at, expires_at) = times.unwrap_or((summary.fetched_at, summary.fetched_at));
    let page = ProjectPage {
        project: ProjectView {
            display_name: summary.display_name,
            status: detail.status,
            files: summary.files,
            cached_files: summary.cached_files,
            cached_size: view::size(summary.cached_bytes),
            fetched: view::relative(fetched_at, now),
            expires: if expires_at <= now {
                "expired".into()
            } else {
                view::relative(expires_at, now)
            },
            expired: expires_at <= now,
            index_href: format!("/simple/{name}/"),
            admin_href: format!("/admin?project={name}"),
            hosted: summary.hosted,
        },
        versions,
    };
    Ok(html(
        StatusCode::OK,
        render("project.html", "packages", "", &page)?,
    ))
}
