//! Routes and handlers: thin. They parse the request, ask `cache/`, and shape the response.

pub(crate) mod admin;
mod files;
mod health;
mod hex;
mod middleware;
mod representation;
mod simple;

use std::sync::Arc;
use std::time::Instant;

use actix_web::{HttpRequest, web};
use url::Url;

use crate::cache::CacheCounters;
use crate::cache::explorer::Explorer;
use crate::cache::files::FileCache;
use crate::cache::hex::HexMirror;
use crate::cache::maintenance::Evictor;
use crate::cache::simple::SimplePages;
use crate::config::Secret;
use crate::error::AppError;

pub use middleware::{access_log, html_errors};

/// What every handler can reach.
pub struct AppState {
    pub pages: Arc<SimplePages>,
    pub files: Arc<FileCache>,
    /// `None` when `hex.enabled` is false.
    pub hex: Option<HexMirror>,
    /// Keeps a local store within `storage.max_size`; `None` for S3 and tiered stores.
    pub evictor: Option<Evictor>,
    pub counters: Arc<CacheCounters>,
    /// The catalogue as the web UI browses it, and the admin log.
    pub explorer: Explorer,
    /// Admin sessions and the sign-in rate limit.
    pub ui: crate::web::Ui,
    pub admin_token: Secret,
    pub public_url: Option<Url>,
    pub started: Instant,
}

/// The route table.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // `/index/...` is proxpi's spelling of `/simple/...`.
    for prefix in ["/simple", "/index"] {
        cfg.service(
            web::scope(prefix)
                .route("", web::get().to(simple::add_slash))
                .route("", web::head().to(simple::add_slash))
                .route("/", web::get().to(simple::project_list))
                .route("/", web::head().to(simple::project_list))
                .route("/{project}", web::get().to(simple::project_redirect))
                .route("/{project}", web::head().to(simple::project_redirect))
                .route("/{project}/", web::get().to(simple::project_page))
                .route("/{project}/", web::head().to(simple::project_page))
                .route("/{project}/{filename}", web::get().to(files::file))
                .route("/{project}/{filename}", web::head().to(files::file)),
        );
    }
    // `//packages/x` (rebar3 keeps HEX_CDN's trailing slash) lands here with the path `/packages/x`.
    cfg.route("/hex/{path:.*}", web::get().to(hex::repository))
        .route("/hex/{path:.*}", web::head().to(hex::repository))
        .route("/cache/hex/{name}", web::delete().to(admin::forget_hex_package))
        .route("/cache/list", web::delete().to(admin::forget_list))
        .route("/cache/{project}", web::delete().to(admin::forget_project))
        .route("/health", web::get().to(health::health))
        .route("/health", web::head().to(health::health))
        .configure(crate::web::configure)
        .default_service(web::to(not_found));
}

async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, AppError> {
    Err(AppError::NotFound(format!("nothing is served at {}", req.path())))
}

/// An absolute URL for `path` (which starts with `/`) as clients outside see it: under
/// `server.public_url` when set, else the request's own host.
pub(crate) fn external_url(state: &AppState, req: &HttpRequest, path: &str) -> String {
    match &state.public_url {
        Some(base) => format!("{}{}", base.as_str().trim_end_matches('/'), path),
        None => {
            let info = req.connection_info();
            format!("{}://{}{}", info.scheme(), info.host(), path)
        }
    }
}
