//! Admin endpoints: `DELETE /cache/list` and `DELETE /cache/{project}`, answered as proxpi does.
//!
//! Who may call them is `auth`'s to say; a failed attempt goes to the admin log.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::auth::{Attempt, Failure, bearer_token, describe, is_loopback, too_many_failures};
use crate::cache::hosted::is_hosted_url;
use crate::cache::simple::PageRef;
use crate::ecosystem::Ecosystem;
use crate::error::AppError;
use crate::hex::validate_package_name;
use crate::policy::Release;
use crate::pypi::name::{normalize, validate_project_name};
use crate::state::AppState;

pub async fn forget_list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AppError> {
    admit(&state, &req).await?;
    state.pages.forget(PageRef::List).await?;
    tracing::info!("admin: project list cache cleared");
    Ok(success())
}

pub async fn forget_project(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AppError> {
    admit(&state, &req).await?;
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
    admit(&state, &req).await?;
    let hex = super::hex::mirror(&state)?;
    let name = req.match_info().get("name").unwrap_or("");
    validate_package_name(name).map_err(|e| AppError::BadRequest(format!("invalid package name: {e}")))?;
    let was_cached = hex.forget_package(name).await?;
    tracing::info!(package = %name, was_cached, "admin: hex registry file cleared");
    Ok(success())
}

#[derive(serde::Deserialize)]
pub struct ExplainQuery {
    ecosystem: Option<String>,
    project: String,
    version: Option<String>,
}

/// `GET /policy/explain?ecosystem=pypi&project=foo&version=2.0`: every check the release policy
/// makes of each file of the project (of that version) the catalogue lists, and its verdict.
pub async fn explain_policy(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<ExplainQuery>,
) -> Result<HttpResponse, AppError> {
    admit(&state, &req).await?;
    let ecosystem = match query.ecosystem.as_deref() {
        None | Some("") => Ecosystem::Pypi,
        Some(text) => Ecosystem::parse(text)
            .ok_or_else(|| AppError::BadRequest(format!("'{text}' is not an ecosystem: use pypi or hex")))?,
    };
    let project = match ecosystem {
        Ecosystem::Pypi => {
            validate_project_name(&query.project)
                .map_err(|e| AppError::BadRequest(format!("invalid project name: {e}")))?;
            normalize(&query.project)
        }
        Ecosystem::Hex => {
            validate_package_name(&query.project)
                .map_err(|e| AppError::BadRequest(format!("invalid package name: {e}")))?;
            query.project.clone()
        }
    };
    let detail = state
        .explorer
        .project(ecosystem, project.clone())
        .await?
        .ok_or_else(|| {
            AppError::NotFound(format!(
                "'{project}' is not in the catalogue: no client has asked the mirror for it yet"
            ))
        })?;
    let policy = state.policy.current();
    let now = crate::cache::unix_now();
    let files: Vec<serde_json::Value> = detail
        .files
        .iter()
        .map(|file| &file.file)
        .filter(|file| {
            query
                .version
                .as_deref()
                .is_none_or(|v| file.version.as_deref() == Some(v))
        })
        .map(|file| {
            let mut entry = serde_json::json!({"filename": file.filename, "version": file.version});
            if is_hosted_url(&file.url) {
                entry["served"] = true.into();
                entry["message"] = "a hosted file: the release policy does not apply".into();
            } else {
                let explained = policy.explain(&Release::of(ecosystem, &project, file, now), now);
                if let (Some(target), serde_json::Value::Object(fields)) =
                    (entry.as_object_mut(), serde_json::json!(explained))
                {
                    target.extend(fields);
                }
            }
            entry
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(serde_json::json!({"ecosystem": ecosystem.as_str(), "project": project, "files": files})))
}

/// The longest request path written to the admin log: paths are the client's to choose.
const LOGGED_PATH_CHARS: usize = 200;

/// Lets a tool's admin request through, or says why not.
async fn admit(state: &AppState, req: &HttpRequest) -> Result<(), AppError> {
    let client = state.client(req);
    if !state.admin.token_is_set() {
        return if is_loopback(client) {
            Ok(())
        } else {
            Err(AppError::Forbidden(
                "admin endpoints answer only loopback clients while server.admin_token is not set".into(),
            ))
        };
    }
    let address = describe(client);
    let action = || {
        let path: String = req.path().chars().take(LOGGED_PATH_CHARS).collect();
        format!("{} {path}", req.method())
    };
    match state.admin.attempt(client, bearer_token(req)) {
        Attempt::Admitted => Ok(()),
        Attempt::Failed(failure) => {
            let outcome = format!("failed: {}", failure.as_str());
            state
                .record_admin_action(&address, &action(), None, &outcome)
                .await;
            Err(AppError::Unauthorized(match failure {
                Failure::NoToken => {
                    "this endpoint needs the header 'Authorization: Bearer <admin token>'".into()
                }
                Failure::WrongToken => "the admin token is not valid".into(),
            }))
        }
        Attempt::Limited { retry_after, first } => {
            if first {
                let outcome = "refused: too many failed attempts";
                state
                    .record_admin_action(&address, &action(), None, outcome)
                    .await;
            }
            Err(too_many_failures(&address, retry_after))
        }
    }
}

/// proxpi's answer, so scripts written for it keep working.
fn success() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "success", "data": null}))
}
