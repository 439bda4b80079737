//! `/hex/api/...`: the part of the hex HTTP API that publishes to a hosted repository
//! (`POST /hex/api/publish`, `POST /hex/api/repos/{name}/publish`, as mix and hex_core send a
//! release tarball). The key hex clients send must be a token granting `upload:hex:{name}`.
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
use crate::hex::api::{encode, wants_erlang};
use crate::hex::hosted::Published;
use crate::hex::tarball_name;
use crate::state::{AppState, external_url};

/// `POST /hex/api/publish`: to the one hosted repository.
pub async fn publish(state: web::Data<AppState>, req: HttpRequest, body: web::Payload) -> HttpResponse {
    let repository = match state.hex_hosted.repositories() {
        [only] => Ok(only.name.clone()),
        [] => Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "this mirror hosts no hex repository (see [[hex.hosted]])".into(),
        )),
        several => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!(
                "this mirror hosts several hex repositories ({}): publish to /hex/api/repos/NAME/publish \
                 (mix: --organization NAME; hex_core: api_repository)",
                several
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    };
    answer(
        &req,
        async { publish_to(&state, &req, repository?, body).await }.await,
    )
}

/// `POST /hex/api/repos/{name}/publish`.
pub async fn publish_to_repository(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Payload,
) -> HttpResponse {
    let result = publish_to(&state, &req, name.into_inner(), body).await;
    answer(&req, result)
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
    if hosted.repository(&repository).is_none() {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            format!("no hosted hex repository is named {repository:?}"),
        ));
    }
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
            "inserted_at": humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(release.published_at)
            ).to_string(),
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
