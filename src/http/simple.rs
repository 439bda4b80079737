//! `/simple/` and `/simple/{project}/` (and their `/index/` aliases), and the same for each index
//! on its own under `/indexes/{index}/simple/`.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use super::representation::{Encoding, accept_encoding, choose_encoding, not_modified};
use crate::cache::pages::Served;
use crate::cache::simple::{PageRef, View};
use crate::error::AppError;
use crate::pypi::name::{normalize, validate_project_name};
use crate::pypi::negotiate::{Negotiated, negotiate};
use crate::state::{AppState, external_url};

/// Clients may keep a page this long before asking again; short, so a cleared or updated project
/// shows up quickly, but long enough to spare a resolver's repeated look-ups.
const PAGE_MAX_AGE: &str = "max-age=60, public";

fn negotiated(req: &HttpRequest) -> Result<Negotiated, AppError> {
    let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
    negotiate(accept, req.query_string()).map_err(|e| AppError::NotAcceptable(e.to_string()))
}

/// The view a request names (`/indexes/{index}/simple/...`, else `/simple/`) and the path
/// prefix its pages are under; an index no one configured is a 404.
pub(crate) fn view_of(state: &AppState, req: &HttpRequest) -> Result<(View, String), AppError> {
    match req.match_info().get("index") {
        Some(name) => match state.pages.view(name) {
            Some(view) => Ok((view, format!("/indexes/{name}/simple"))),
            None => Err(AppError::NotFound(format!(
                "no upstream or hosted index is named '{name}'"
            ))),
        },
        // `/index/...` is proxpi's spelling of `/simple/...`.
        None if req.path().starts_with("/index/") || req.path() == "/index" => {
            Ok((View::All, "/index".to_owned()))
        }
        None => Ok((View::All, "/simple".to_owned())),
    }
}

pub(crate) fn redirect(state: &AppState, req: &HttpRequest, path: &str) -> HttpResponse {
    let mut location = external_url(state, req, path);
    if !req.query_string().is_empty() {
        location.push('?');
        location.push_str(req.query_string());
    }
    HttpResponse::MovedPermanently()
        .insert_header((header::LOCATION, location))
        .finish()
}

pub async fn add_slash(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AppError> {
    let (_, prefix) = view_of(&state, &req)?;
    Ok(redirect(&state, &req, &format!("{prefix}/")))
}

/// A project name from the path, checked: a bad one is answered before anything else happens.
pub(crate) fn project_name(req: &HttpRequest) -> Result<&str, AppError> {
    let raw = req.match_info().get("project").unwrap_or("");
    validate_project_name(raw).map_err(|e| AppError::BadRequest(format!("invalid project name: {e}")))?;
    Ok(raw)
}

pub async fn project_redirect(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, AppError> {
    let (_, prefix) = view_of(&state, &req)?;
    let name = project_name(&req)?;
    Ok(redirect(&state, &req, &format!("{prefix}/{}/", normalize(name))))
}

pub async fn project_list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AppError> {
    let (view, _) = view_of(&state, &req)?;
    let negotiated = negotiated(&req)?;
    let served = state.pages.get(&view, PageRef::List, negotiated.format).await?;
    Ok(page_response(&req, &negotiated, served))
}

pub async fn project_page(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AppError> {
    let (view, prefix) = view_of(&state, &req)?;
    let name = project_name(&req)?;
    let normalized = normalize(name);
    if normalized != name {
        return Ok(redirect(&state, &req, &format!("{prefix}/{normalized}/")));
    }
    let negotiated = negotiated(&req)?;
    let served = state
        .pages
        .get(&view, PageRef::Project(normalized), negotiated.format)
        .await?;
    Ok(page_response(&req, &negotiated, served))
}

/// A stored page as the client asked for it: 304 when its ETag matches, else the best stored
/// encoding. Bodies are `Bytes` clones of what is in memory: nothing is copied or compressed here.
fn page_response(req: &HttpRequest, negotiated: &Negotiated, served: Served) -> HttpResponse {
    let page = &served.page;
    let status = if not_modified(req, &page.header.etag) {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let mut response = HttpResponse::build(status);
    response
        .insert_header((header::ETAG, page.header.etag.as_str()))
        .insert_header((header::VARY, "Accept, Accept-Encoding"))
        .insert_header((header::CACHE_CONTROL, PAGE_MAX_AGE))
        .insert_header(("X-Cache", served.outcome.as_str()));
    if status == StatusCode::NOT_MODIFIED {
        return response.finish();
    }
    response.insert_header((
        header::CONTENT_TYPE,
        HeaderValue::from_static(negotiated.content_type),
    ));
    let (coding, body) = match choose_encoding(accept_encoding(req)) {
        Encoding::Zstd if !page.zstd.is_empty() => (Some("zstd"), page.zstd.clone()),
        Encoding::Gzip if !page.gzip.is_empty() => (Some("gzip"), page.gzip.clone()),
        _ => (None, page.identity.clone()),
    };
    if let Some(coding) = coding {
        response.insert_header((header::CONTENT_ENCODING, coding));
    }
    response.body(body)
}
