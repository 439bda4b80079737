//! Admin endpoints: `DELETE /cache/list` and `DELETE /cache/{project}`, answered as proxpi does.
//!
//! With `server.admin_token` set they need `Authorization: Bearer <token>`; without one, only
//! loopback clients may call them (a mirror reachable from a network must not let anyone there
//! flush its cache).

use actix_web::http::header::AUTHORIZATION;
use actix_web::{HttpRequest, HttpResponse, web};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::cache::simple::PageRef;
use crate::error::AppError;
use crate::pypi::name::{normalize, validate_project_name};

pub async fn forget_list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AppError> {
    authorize(&state, &req)?;
    state.pages.forget(PageRef::List).await?;
    tracing::info!("admin: project list cache cleared");
    Ok(success())
}

pub async fn forget_project(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AppError> {
    authorize(&state, &req)?;
    let raw = req.match_info().get("project").unwrap_or("");
    validate_project_name(raw).map_err(|e| AppError::BadRequest(format!("invalid project name: {e}")))?;
    let name = normalize(raw);
    let was_cached = state.pages.forget(PageRef::Project(name.clone())).await?;
    tracing::info!(project = %name, was_cached, "admin: project page cache cleared");
    Ok(success())
}

/// proxpi's answer, so scripts written for it keep working.
fn success() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "success", "data": null}))
}

pub(crate) fn authorize(state: &AppState, req: &HttpRequest) -> Result<(), AppError> {
    if state.admin_token.is_empty() {
        let loopback = req
            .peer_addr()
            .is_some_and(|addr| addr.ip().to_canonical().is_loopback());
        return if loopback {
            Ok(())
        } else {
            Err(AppError::Forbidden(
                "admin endpoints answer only loopback clients while server.admin_token is not set".into(),
            ))
        };
    }
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(presented) = presented else {
        return Err(AppError::Unauthorized(
            "this endpoint needs the header 'Authorization: Bearer <admin token>'".into(),
        ));
    };
    // Comparing digests keeps the comparison constant-time even in the token's length.
    let matches: bool = Sha256::digest(presented.as_bytes())
        .ct_eq(&Sha256::digest(state.admin_token.expose().as_bytes()))
        .into();
    if matches {
        Ok(())
    } else {
        Err(AppError::Unauthorized("the admin token is not valid".into()))
    }
}
