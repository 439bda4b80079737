//! Routes and handlers: thin. They parse the request, ask `cache/`, and shape the response.

mod admin;
pub mod file_body;
mod files;
mod health;
mod hex;
mod hex_api;
mod limits;
pub mod listener;
pub mod metrics;
mod middleware;
mod representation;
mod simple;
pub mod tls;
mod upload;

use actix_web::{HttpRequest, web};

use crate::error::AppError;

pub use limits::{ClientLimits, limit_clients};
pub use middleware::{HitSampler, access_log, body_deadline, html_errors, measure, read_access};
pub(crate) use upload::read_field;

/// The methods of a path answered by GET and HEAD.
pub(crate) const GET_HEAD: &str = "GET, HEAD";

/// A path whose routes take the methods `allow` lists; any other method gets 405 with `Allow`
/// (a route table of method-guarded routes alone would answer 404, as if the path were unknown).
pub(crate) fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move |req: HttpRequest| async move {
        Err::<actix_web::HttpResponse, _>(AppError::MethodNotAllowed(
            format!("{} takes {allow}, not {}", req.path(), req.method()),
            allow,
        ))
    }))
}

/// [`resource`] answering GET and HEAD with `handler`.
fn get_head<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args> + Clone,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    resource(path, GET_HEAD)
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
}

/// The tool-facing routes (the browser UI's are `web::configure`; `routes` assembles both).
pub fn configure(cfg: &mut web::ServiceConfig) {
    // `/index/...` is proxpi's spelling of `/simple/...`; each index alone is under `/indexes/`.
    for prefix in ["/simple", "/index", "/indexes/{index}/simple"] {
        cfg.service(
            web::scope(prefix)
                .service(get_head("", simple::add_slash))
                .service(get_head("/", simple::project_list))
                .service(get_head("/{project}", simple::project_redirect))
                .service(get_head("/{project}/", simple::project_page))
                .service(get_head("/{project}/{filename}", files::file)),
        );
    }
    // The hex API of hosted repositories, before `/hex/{path}`, whose GET and HEAD would answer
    // these paths' POST with 405.
    for api in ["/hex/api", "/hex/api/repos/{repo}"] {
        cfg.service(resource(&format!("{api}/publish"), "POST").route(web::post().to(hex_api::publish)))
            .service(get_head(&format!("{api}/packages/{{name}}"), hex_api::package))
            .service(
                resource(
                    &format!("{api}/packages/{{name}}/releases/{{version}}/retire"),
                    "POST, DELETE",
                )
                .route(web::post().to(hex_api::retire))
                .route(web::delete().to(hex_api::retire)),
            );
    }
    cfg.service(get_head("/hex/api/users/me", hex_api::me));
    // `//packages/x` (rebar3 keeps HEX_CDN's trailing slash) lands here with the path `/packages/x`.
    cfg.service(get_head("/hex/{path:.*}", hex::repository))
        .service(resource("/cache/hex/{name}", "DELETE").route(web::delete().to(admin::forget_hex_package)))
        .service(resource("/cache/list", "DELETE").route(web::delete().to(admin::forget_list)))
        .service(resource("/cache/{project}", "DELETE").route(web::delete().to(admin::forget_project)))
        .service(get_head("/health", health::health))
        .service(get_head("/metrics", metrics::with_token))
        .service(get_head("/policy/explain", admin::explain_policy));
    // Hosted indexes take uploads at their own root, as twine's --repository-url names it.
    for path in ["/indexes/{name}/", "/indexes/{name}"] {
        cfg.service(resource(path, "POST").route(web::post().to(upload::upload)));
    }
}

/// The routes of `metrics.listen`: `/metrics` alone, open.
pub fn configure_metrics_listener(cfg: &mut web::ServiceConfig) {
    cfg.service(get_head("/metrics", metrics::scrape))
        .default_service(web::to(not_found));
}

/// What answers a path no route takes.
pub async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, AppError> {
    Err(AppError::NotFound(format!("nothing is served at {}", req.path())))
}
