//! `/hex/api/...`: the part of the hex HTTP API a hosted repository needs: publishing a release
//! tarball (`POST /hex/api/publish`, `POST /hex/api/repos/{name}/publish`, as mix and hex_core
//! send it), retiring a release, a package's description and `users/me` (which mix asks for
//! before publishing). Writing needs a token granting `upload:hex:{name}`, sent as the key.
//! Answers are hex.pm's: 201 with the release, or the status with `{status, message}`, in the
//! Erlang term format when the client accepts it (see `hex::api`).

use actix_web::http::{ConnectionType, StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use futures::StreamExt;
use serde_json::json;

use crate::auth::tokens::Scope;
use crate::cache::hosted::HostedError;
use crate::cache::ingest::IngestError;
use crate::error::AppError;
use crate::hex::api::{ERLANG_CONTENT_TYPE, decode_fields, encode, wants_erlang};
use crate::hex::hosted::{HostedRetirement, Published};
use crate::hex::tarball_name;
use crate::state::{AppState, external_url};

/// `POST /hex/api/publish` (the one hosted repository) and `/hex/api/repos/{repo}/publish`.
pub async fn publish(state: web::Data<AppState>, req: HttpRequest, body: web::Payload) -> HttpResponse {
    let result = async {
        let repository = repository_of(&state, &req)?;
        publish_to(&state, &req, repository, body).await
    }
    .await;
    answer(&req, result)
}

/// `GET /hex/api/packages/{name}` (and under `repos/{repo}/`): a hosted package as hex.pm's API
/// describes one (mix asks before publishing).
pub async fn package(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let result = async {
        let repository = repository_of(&state, &req)?;
        let name = package_name(&req)?;
        let package = state
            .hex_hosted
            .package(&repository, name)
            .await?
            .ok_or_else(|| {
                Refusal::new(
                    StatusCode::NOT_FOUND,
                    format!("the hosted hex repository {repository:?} has no package {name:?}"),
                )
            })?;
        let releases: Vec<serde_json::Value> = package
            .releases
            .iter()
            .rev()
            .map(|release| {
                let filename = tarball_name(&package.name, &release.version);
                json!({
                    "version": release.version,
                    "inserted_at": rfc3339(release.published_at),
                    "url": external_url(&state, &req, &format!("/hex/repos/{repository}/tarballs/{filename}")),
                    "has_docs": false,
                    "retirement": release.retired.as_ref().map(|r| json!({"reason": r.reason, "message": r.message})),
                })
            })
            .collect();
        Ok((
            StatusCode::OK,
            json!({
                "name": package.name,
                "repository": repository,
                "releases": releases,
                "html_url": external_url(&state, &req, &format!("/packages/hex/{}", package.name)),
                "url": external_url(&state, &req, &format!("/hex/api/repos/{repository}/packages/{}", package.name)),
            }),
        ))
    }
    .await;
    answer(&req, result)
}

/// `GET /hex/api/users/me`: the token's name as the user (mix asks for the organizations).
pub async fn me(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let result = async {
        let token = state.require_token(&req, &Scope::Read).await?;
        Ok((
            StatusCode::OK,
            json!({"username": token.name, "organizations": []}),
        ))
    }
    .await;
    answer(&req, result)
}

/// `POST` (retire) and `DELETE` (unretire) `/hex/api/packages/{name}/releases/{version}/retire`
/// (and under `repos/{repo}/`), as `mix hex.retire` and hex_core send them; the token must grant
/// publishing to the repository.
pub async fn retire(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let result = async {
        let repository = repository_of(&state, &req)?;
        let token = state.require_token(&req, &Scope::hex_upload(&repository)).await?;
        let name = package_name(&req)?;
        let version = req.match_info().get("version").unwrap_or_default();
        let retirement = if req.method() == actix_web::http::Method::DELETE {
            None
        } else {
            let erlang = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.starts_with(ERLANG_CONTENT_TYPE));
            let fields = decode_fields(&body, erlang)
                .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, format!("a retirement's body: {e}")))?;
            let field = |key: &str| fields.get(key).cloned().unwrap_or_default();
            Some(HostedRetirement {
                reason: field("reason"),
                message: field("message"),
            })
        };
        let release = state
            .hex_hosted
            .retire(&repository, name, version, retirement)
            .await?;
        let outcome = match &release.retired {
            Some(r) => format!("{} ({})", r.reason, r.message),
            None => "unretired".to_owned(),
        };
        // As the same change made in /admin is.
        let actor = format!(
            "token {} ({})",
            token.name,
            crate::auth::describe(state.client(&req))
        );
        let target = format!("{repository}/{name} {version}");
        state
            .record_admin_action(&actor, "hex-retire", Some(&target), &outcome)
            .await;
        Ok((StatusCode::NO_CONTENT, serde_json::Value::Null))
    }
    .await;
    answer(&req, result)
}

/// The repository a request names (`repos/{repo}/` in its path), else the one hosted repository.
fn repository_of(state: &AppState, req: &HttpRequest) -> Result<String, Refusal> {
    if let Some(named) = req.match_info().get("repo") {
        return match state.hex_hosted.repository(named) {
            Some(repository) => Ok(repository.name.clone()),
            None => Err(Refusal::new(
                StatusCode::NOT_FOUND,
                format!("no hosted hex repository is named {named:?}"),
            )),
        };
    }
    match state.hex_hosted.repositories() {
        [only] => Ok(only.name.clone()),
        [] => Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "this mirror hosts no hex repository (see [[hex.hosted]])".into(),
        )),
        several => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!(
                "this mirror hosts several hex repositories ({}): name one, as /hex/api/repos/NAME/... \
                 (mix: --organization NAME; hex_core: api_repository)",
                several
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// The package a request's path names, if it is a hex package name.
fn package_name(req: &HttpRequest) -> Result<&str, Refusal> {
    let name = req.match_info().get("name").unwrap_or_default();
    crate::hex::validate_package_name(name).map_err(|e| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("{name:?} is not a hex package name: {e}"),
        )
    })?;
    Ok(name)
}

fn rfc3339(seconds: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds))
        .to_string()
}

/// Why a request was refused: a status and what the client shows.
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: String) -> Self {
        Self { status, message }
    }
}

impl From<AppError> for Refusal {
    fn from(e: AppError) -> Self {
        Self::new(e.status_code(), e.to_string())
    }
}

impl From<HostedError> for Refusal {
    fn from(e: HostedError) -> Self {
        let status = match &e {
            HostedError::UnknownIndex(_) | HostedError::NotFound(_) => StatusCode::NOT_FOUND,
            // hex.pm answers a release that fails its checks with 422.
            HostedError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            HostedError::Conflict(_) => StatusCode::CONFLICT,
            HostedError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::new(status, e.to_string())
    }
}

async fn publish_to(
    state: &AppState,
    req: &HttpRequest,
    repository: String,
    body: web::Payload,
) -> Result<(StatusCode, serde_json::Value), Refusal> {
    let hosted = &state.hex_hosted;
    let token = state.require_token(req, &Scope::hex_upload(&repository)).await?;
    let body =
        body.map(|chunk| chunk.map_err(|e| IngestError::Upstream(format!("the upload broke off: {e}"))));
    let staged = hosted.receive(body).await?;
    let outcome = hosted.publish(&repository, staged, &token.name).await?;
    let release = &outcome.release;
    let filename = tarball_name(&outcome.name, &release.version);
    let status = match outcome.published {
        Published::Added => StatusCode::CREATED,
        Published::Again => StatusCode::OK,
    };
    Ok((
        status,
        json!({
            "name": outcome.name,
            "version": release.version,
            "repository": repository,
            "checksum": release.outer_checksum,
            "inner_checksum": release.inner_checksum,
            "publisher": release.publisher,
            "inserted_at": rfc3339(release.published_at),
            "url": external_url(state, req, &format!("/hex/repos/{repository}/tarballs/{filename}")),
            "html_url": external_url(state, req, &format!("/packages/hex/{}", outcome.name)),
        }),
    ))
}

fn answer(req: &HttpRequest, result: Result<(StatusCode, serde_json::Value), Refusal>) -> HttpResponse {
    let erlang = wants_erlang(req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let (status, body, refused) = match result {
        Ok((status, body)) => (status, body, false),
        Err(Refusal { status, message }) => (
            status,
            json!({"status": status.as_u16(), "message": message}),
            true,
        ),
    };
    if status == StatusCode::NO_CONTENT {
        return HttpResponse::NoContent().finish();
    }
    let (content_type, bytes) = encode(&body, erlang);
    let mut response = HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, content_type))
        .body(bytes);
    if refused {
        // A refusal may come before the body was read (a wrong token): the connection cannot
        // carry another request after an unread body.
        response.head_mut().set_connection_type(ConnectionType::Close);
    }
    response
}
