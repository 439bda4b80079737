//! The route table: the tool-facing routes of `http/`, the browser UI of `web/`, and what answers
//! any other path. Neither module mounts the other.

use actix_web::web;

/// Every route the server answers.
pub fn configure(cfg: &mut web::ServiceConfig) {
    crate::http::configure(cfg);
    crate::web::configure(cfg);
    cfg.default_service(web::to(crate::http::not_found));
}
