//! `POST /indexes/{name}/`: the legacy upload API (multipart, `:action=file_upload`) that twine,
//! `uv publish`, `poetry publish` and `pdm publish` speak, for hosted indexes. The token must
//! grant `upload:{name}`; the rules are `cache::hosted`'s.

use actix_multipart::Multipart;
use actix_web::http::ConnectionType;
use actix_web::{HttpRequest, HttpResponse, web};
use futures::StreamExt;

use crate::auth::tokens::Scope;
use crate::cache::hosted::{HostedError, UploadForm, Uploaded};
use crate::cache::ingest::{IngestError, Staged};
use crate::cache::simple::{PageRef, View};
use crate::error::AppError;
use crate::pypi::name::normalize;
use crate::pypi::negotiate::Format;
use crate::state::AppState;

/// The most bytes kept of one text field (a project's name, a digest...). Fields this server
/// does not use (a long description, classifiers) are read past, never kept.
const MAX_FIELD: usize = 64 * 1024;

impl From<HostedError> for AppError {
    fn from(e: HostedError) -> Self {
        match e {
            HostedError::UnknownIndex(_) => AppError::NotFound(e.to_string()),
            HostedError::NotFound(m) => AppError::NotFound(m),
            HostedError::Invalid(m) => AppError::BadRequest(m),
            HostedError::Conflict(m) => AppError::Conflict(m),
            HostedError::Storage(m) => AppError::Unavailable(m),
        }
    }
}

pub async fn upload(
    state: web::Data<AppState>,
    req: HttpRequest,
    index: web::Path<String>,
    form: Multipart,
) -> HttpResponse {
    match receive(state, req, index.into_inner(), form).await {
        Ok(response) => response,
        Err(e) => {
            // A refusal may come before the body was read (a wrong token, an unknown index):
            // the connection cannot carry another request after an unread body.
            let mut response = HttpResponse::from_error(e);
            response.head_mut().set_connection_type(ConnectionType::Close);
            response
        }
    }
}

async fn receive(
    state: web::Data<AppState>,
    req: HttpRequest,
    index: String,
    mut form: Multipart,
) -> Result<HttpResponse, AppError> {
    if !state.hosted.has_index(&index) {
        return Err(HostedError::UnknownIndex(index).into());
    }
    let token = state
        .require_token(&req, &Scope::Upload(Some(index.clone())))
        .await?;
    let mut fields = UploadForm::default();
    let mut action = None;
    let mut staged: Option<Staged> = None;
    let result = async {
        while let Some(field) = form.next().await {
            let mut field = field.map_err(|e| AppError::BadRequest(format!("a malformed upload: {e}")))?;
            let name = field.name().unwrap_or_default().to_owned();
            if name == "content" {
                if staged.is_some() {
                    return Err(AppError::BadRequest("an upload carries one file".into()));
                }
                fields.filename = field
                    .content_disposition()
                    .and_then(|d| d.get_filename())
                    .unwrap_or_default()
                    .to_owned();
                let body = field.map(|chunk| {
                    chunk.map_err(|e| IngestError::Upstream(format!("the upload broke off: {e}")))
                });
                staged = Some(state.hosted.receive(body).await?);
                continue;
            }
            let value = read_text(&mut field).await?;
            match name.as_str() {
                ":action" => action = value,
                "name" => fields.name = value.unwrap_or_default(),
                "version" => fields.version = value.unwrap_or_default(),
                "sha256_digest" => fields.sha256_digest = value.filter(|v| !v.is_empty()),
                "md5_digest" => fields.md5_digest = value.filter(|v| !v.is_empty()),
                "requires_python" => fields.requires_python = value,
                _ => {}
            }
        }
        Ok::<_, AppError>(())
    }
    .await;
    let Some(staged) = staged else {
        return Err(result.err().unwrap_or_else(|| {
            AppError::BadRequest("the upload carries no file (field \"content\")".into())
        }));
    };
    if let Err(e) = result {
        staged.abort().await;
        return Err(e);
    }
    if action.as_deref() != Some("file_upload") {
        staged.abort().await;
        return Err(AppError::BadRequest(format!(
            "unsupported :action {:?}: only file_upload",
            action.unwrap_or_default()
        )));
    }
    let filename = fields.filename.clone();
    let project = normalize(&fields.name);
    let outcome = state.hosted.accept(&index, fields, staged, &token.name).await?;
    let message = match outcome {
        Uploaded::Stored => {
            // This node shows the new file at once; others when their page's TTL ends.
            state
                .pages
                .forget_rendering(PageRef::Project(project.clone()))
                .await?;
            // Rendered now, so the catalogue (and the web UI) knows the project before anyone
            // installs it. The upload is kept either way.
            if let Err(e) = state
                .pages
                .get(&View::All, PageRef::Project(project), Format::Json)
                .await
            {
                tracing::warn!(file = %filename, error = %e, "an uploaded project's page could not be rendered");
            }
            format!("stored {filename}\n")
        }
        Uploaded::AlreadyThere => format!("{filename} is already there with the same bytes\n"),
    };
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(message))
}

/// A text field's value, at most [`MAX_FIELD`] bytes of it kept (the rest read past).
async fn read_text(field: &mut actix_multipart::Field) -> Result<Option<String>, AppError> {
    Ok(read_field(field, MAX_FIELD)
        .await?
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned()))
}

/// A multipart field's bytes, or `None` when there are more than `limit` (read past, not kept).
pub(crate) async fn read_field(
    field: &mut actix_multipart::Field,
    limit: usize,
) -> Result<Option<Vec<u8>>, AppError> {
    let mut bytes = Vec::new();
    let mut overflow = false;
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|e| AppError::BadRequest(format!("a malformed upload: {e}")))?;
        if bytes.len() + chunk.len() > limit {
            overflow = true;
        } else {
            bytes.extend_from_slice(&chunk);
        }
    }
    Ok((!overflow).then_some(bytes))
}
