//! Admin endpoints: `DELETE /cache/list` and `DELETE /cache/{project}`, answered as proxpi does.
//!
//! Who may call them is `auth::authorize`'s to say.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::auth::authorize;
use crate::cache::simple::PageRef;
use crate::error::AppError;
use crate::hex::validate_package_name;
use crate::pypi::name::{normalize, validate_project_name};
use crate::state::AppState;

pub async fn forget_list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AppError> {
    authorize(&state.admin_token, &req)?;
    state.pages.forget(PageRef::List).await?;
    tracing::info!("admin: project list cache cleared");
    Ok(success())
}

pub async fn forget_project(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AppError> {
    authorize(&state.admin_token, &req)?;
    let raw = req.match_info().get("project").unwrap_or("");
    validate_project_name(raw).map_err(|e| AppError::BadRequest(format!("invalid project name: {e}")))?;
    let name = normalize(raw);
    let was_cached = state.pages.forget(PageRef::Project(name.clone())).await?;
    tracing::info!(project = %name, was_cached, "admin: project page cache cleared");
    Ok(success())
}

/// `DELETE /cache/hex/{name}`: forgets a hex package's registry file.
pub async fn forget_hex_package(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, AppError> {
    authorize(&state.admin_token, &req)?;
    let hex = super::hex::mirror(&state)?;
    let name = req.match_info().get("name").unwrap_or("");
    validate_package_name(name).map_err(|e| AppError::BadRequest(format!("invalid package name: {e}")))?;
    let was_cached = hex.forget_package(name).await?;
    tracing::info!(package = %name, was_cached, "admin: hex registry file cleared");
    Ok(success())
}

/// proxpi's answer, so scripts written for it keep working.
fn success() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "success", "data": null}))
}
