//! `/admin`'s warm run: an uploaded lock file warms the cache through the server's own listener
//! (`warm::runs`), and the admin page shows how far it is.

use actix_multipart::Multipart;
use actix_web::{HttpRequest, HttpResponse, web};
use futures::StreamExt as _;
use serde::Serialize;

use super::admin::{authorized, record, see_other};
use super::session::{self, Flash};
use super::{UiError, view};
use crate::auth::tokens::Scope;
use crate::cache::unix_now;
use crate::error::AppError;
use crate::state::AppState;
use crate::warm::Report;
use crate::warm::lockfile::{self, Skipped};
use crate::warm::runs::Run;

/// The largest lock file taken (big monorepo locks are a few MB).
const MAX_LOCK_FILE: usize = 16 * 1024 * 1024;
/// A run's read token, when reads need one, lives no longer than this.
const TOKEN_LIFETIME: u64 = 24 * 3600;
/// Failures listed on the page (the admin log has the count).
const FAILURES_SHOWN: usize = 50;

/// The latest run, as the admin page shows it.
#[derive(Serialize)]
pub struct WarmView {
    file: String,
    actor: String,
    started: String,
    running: bool,
    pages: String,
    files: String,
    bytes: String,
    summary: Option<String>,
    skipped: Vec<String>,
    failures: Vec<String>,
}

impl WarmView {
    pub fn of(run: &Run) -> Self {
        let now = run.progress.read();
        let report = run.report();
        Self {
            file: run.file.clone(),
            actor: run.actor.clone(),
            started: view::timestamp(run.started_at),
            running: report.is_none(),
            pages: format!("{} of {}", now.pages_done, now.pages_total),
            files: format!("{} of {}", now.files_done, now.files_total),
            bytes: format!(
                "{} of {}",
                view::size(now.bytes_done),
                view::size(now.bytes_total)
            ),
            summary: report
                .as_ref()
                .and_then(|r| r.summary().lines().next().map(str::to_owned)),
            skipped: report.as_ref().map(|r| r.skipped.clone()).unwrap_or_default(),
            failures: report
                .map(|r| r.failures.into_iter().take(FAILURES_SHOWN).collect())
                .unwrap_or_default(),
        }
    }
}

/// `POST /admin/warm` (multipart: `csrf`, `lockfile`): starts a run and goes back to `/admin`.
pub async fn upload(
    state: web::Data<AppState>,
    req: HttpRequest,
    mut form: Multipart,
) -> Result<HttpResponse, UiError> {
    let (mut csrf, mut upload) = (String::new(), None);
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|e| AppError::BadRequest(format!("a malformed upload: {e}")))?;
        match field.name().unwrap_or_default() {
            "csrf" => {
                let value = crate::http::read_field(&mut field, 1024)
                    .await?
                    .unwrap_or_default();
                csrf = String::from_utf8_lossy(&value).trim().to_owned();
            }
            "lockfile" => {
                let name = field
                    .content_disposition()
                    .and_then(|d| d.get_filename())
                    .unwrap_or_default()
                    .to_owned();
                let bytes = crate::http::read_field(&mut field, MAX_LOCK_FILE).await?;
                upload = Some((name, bytes));
            }
            _ => while field.next().await.is_some() {},
        }
    }
    let (_, session) = authorized(&state, &req, &csrf).await?;
    let actor = session::lock(&session).actor.clone();
    let started = match upload {
        None => Err("refused: no lock file was chosen".to_owned()),
        Some((name, None)) => Err(format!(
            "refused: {name} is larger than {}",
            view::size(MAX_LOCK_FILE as u64)
        )),
        Some((name, Some(bytes))) => start(&state, &actor, name, &bytes).await,
    };
    let (file, outcome) = match started {
        Ok((file, outcome)) => (Some(file), Ok(outcome)),
        Err(e) => (None, Err(e)),
    };
    let text = match &outcome {
        Ok(text) | Err(text) => text.clone(),
    };
    record(&state, &actor, "warm", file.as_deref(), &text).await;
    session::lock(&session).flash = Some(Flash {
        kind: if outcome.is_ok() { "ok" } else { "bad" },
        text: format!("warm: {text}"),
        secret: None,
    });
    Ok(see_other("/admin#warm").finish())
}

/// Reads the upload and starts its run: (the file's name, the outcome to show).
async fn start(
    state: &web::Data<AppState>,
    actor: &str,
    name: String,
    bytes: &[u8],
) -> Result<(String, String), String> {
    let file_name = std::path::Path::new(&name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = std::str::from_utf8(bytes).map_err(|_| format!("refused: {file_name} is not UTF-8 text"))?;
    let mut lock = lockfile::parse(&file_name, text).map_err(|e| format!("refused: {e}"))?;
    // An upload is one file: what it includes is not here to read.
    lock.skipped
        .extend(lock.includes.drain(..).map(|include| Skipped {
            what: format!("-r {include}"),
            why: "an uploaded file's includes cannot be read: upload each file".into(),
        }));
    let wanted = format!(
        "{} Python projects and {} hex packages",
        lock.python.len(),
        lock.hex.len()
    );
    // With anonymous reads off, the run reads with a token of its own, revoked when it ends.
    let token_name = format!("warm-{}", unix_now());
    let token = if state.anonymous_read {
        None
    } else {
        let now = unix_now();
        let (_, token) = state
            .tokens
            .tokens()
            .create(&token_name, vec![Scope::Read], Some(now + TOKEN_LIFETIME), now)
            .await
            .map_err(|e| format!("failed: no read token for the run: {e}"))?;
        Some(token)
    };
    let revoke = token.is_some();
    let finished = {
        let (state, actor, file, token_name) = (
            state.clone(),
            actor.to_owned(),
            file_name.clone(),
            token_name.clone(),
        );
        move |report: Report| async move {
            if revoke {
                revoke_token(&state, &token_name).await;
            }
            let counts = report.summary().lines().next().unwrap_or_default().to_owned();
            let outcome = if report.failures.is_empty() {
                format!("ok: {counts}")
            } else {
                format!("failed: {counts}")
            };
            state
                .record_admin_action(&actor, "warm-finished", Some(&file), &outcome)
                .await;
        }
    };
    match state
        .warm
        .start(file_name.clone(), actor.to_owned(), vec![lock], token, finished)
    {
        Ok(_) => Ok((
            file_name.clone(),
            format!("ok: started from {file_name}: {wanted}"),
        )),
        Err(e) => {
            if revoke {
                revoke_token(state, &token_name).await;
            }
            Err(format!("refused: {e}"))
        }
    }
}

async fn revoke_token(state: &AppState, name: &str) {
    if let Err(e) = state.tokens.tokens().revoke(name, unix_now()).await {
        tracing::warn!(token = %name, error = %e, "could not revoke a warm run's token");
    }
}
