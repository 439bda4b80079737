//! Routes and handlers: thin. They parse the request, ask `cache/`, and shape the response.

mod admin;
mod files;
mod health;
mod hex;
mod middleware;
mod representation;
mod simple;

use actix_web::{HttpRequest, web};

use crate::error::AppError;

pub use middleware::{access_log, html_errors};

/// The tool-facing routes (the browser UI's are `web::configure`; `routes` assembles both).
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
        .route("/health", web::head().to(health::health));
}

/// What answers a path no route takes.
pub async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, AppError> {
    Err(AppError::NotFound(format!("nothing is served at {}", req.path())))
}
