//! `/admin`: sign in with the admin token, then act on the cache. Every action is a POST form
//! carrying the session's CSRF token, is recorded in the admin log, and redirects back to the
//! page (post/redirect/get), which shows the outcome once.

use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::session::{self, Flash, SESSION_COOKIE, SIGNIN_COOKIE, SharedSession};
use super::{UiError, html, render, secure_page, view};
use crate::auth::tokens::{TokenError, grant};
use crate::auth::{Attempt, describe, is_loopback, too_many_failures};
use crate::cache::CacheError;
use crate::cache::files::Eviction;
use crate::cache::hosted::{FileChange, HostedError};
use crate::cache::simple::{PageRef, View};
use crate::cache::unix_now;
use crate::config::{PolicyRule, RuleAction};
use crate::ecosystem::Ecosystem;
use crate::error::AppError;
use crate::hex::hosted::HostedRetirement;
use crate::hex::validate_package_name;
use crate::pypi::name::{normalize, validate_project_name};
use crate::pypi::negotiate::Format;
use crate::state::AppState;

/// Admin log entries shown on the page.
const LOG_SHOWN: u64 = 50;

#[derive(Deserialize)]
pub struct AdminQuery {
    /// Pre-fills the project fields (the project page links here).
    project: Option<String>,
}

#[derive(Serialize)]
struct LogRow {
    at: String,
    actor: String,
    action: String,
    target: String,
    outcome: String,
    ok: bool,
}

#[derive(Serialize)]
struct TokenRow {
    name: String,
    state: &'static str,
    scopes: String,
    created: String,
    expires: String,
}

#[derive(Serialize)]
struct RuleRow {
    id: i64,
    rule: String,
    reason: String,
    added: String,
}

/// The release policy in force, as `/admin` shows it.
#[derive(Serialize)]
struct PolicyView {
    min_release_age: String,
    exclude_newer: String,
    unknown_upload_time: &'static str,
    /// The configuration file's rules (changed there, then SIGHUP), one line each.
    file_rules: Vec<String>,
    /// The rules added here, first in force.
    stored: Vec<RuleRow>,
}

#[derive(Serialize)]
struct AdminPage {
    signed_in: bool,
    csrf: String,
    error: Option<String>,
    actor: String,
    flash: Option<Flash>,
    project: String,
    /// Whether the hex actions are offered (the hex mirror is on).
    hex_enabled: bool,
    /// The hosted indexes, for the hosted-file actions.
    hosted_indexes: Vec<String>,
    /// The hosted hex repositories, for retiring releases.
    hex_repositories: Vec<String>,
    tokens: Vec<TokenRow>,
    policy: Option<PolicyView>,
    /// The latest warm run, if any since the server started.
    warm: Option<super::warm::WarmView>,
    log: Vec<LogRow>,
}

/// Cookies get `Secure` when clients reach the server over https.
fn secure(state: &AppState, req: &HttpRequest) -> bool {
    req.connection_info().scheme() == "https"
        || state
            .public_url
            .as_ref()
            .is_some_and(|url| url.scheme() == "https")
}

fn client_address(state: &AppState, req: &HttpRequest) -> String {
    describe(state.client(req))
}

pub(super) fn see_other(location: &str) -> actix_web::HttpResponseBuilder {
    let mut response = HttpResponse::SeeOther();
    response.insert_header((LOCATION, location.to_owned()));
    response
}

fn internal(e: impl std::fmt::Display) -> UiError {
    AppError::Internal(e.to_string()).into()
}

/// A project name from a form or query: validated, normalized.
fn project_name(raw: Option<&str>) -> Result<String, String> {
    let raw = raw.unwrap_or("").trim();
    validate_project_name(raw).map_err(|e| format!("'{raw}' is not a project name: {e}"))?;
    Ok(normalize(raw))
}

pub(super) async fn record(state: &AppState, actor: &str, action: &str, target: Option<&str>, outcome: &str) {
    state.record_admin_action(actor, action, target, outcome).await;
}

/// `GET /admin`: the actions and the log when signed in, else the sign-in form.
pub async fn page(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<AdminQuery>,
) -> Result<HttpResponse, UiError> {
    let prefill = project_name(query.project.as_deref()).unwrap_or_default();
    if let Some((_, session)) = current_session(&state, &req).await {
        return signed_in_page(&state, &session, prefill).await;
    }
    if !state.admin.token_is_set() {
        // Without a token there is nothing to sign in with: loopback clients are admins.
        if !is_loopback(state.client(&req)) {
            return Err(AppError::Forbidden(
                "the admin pages answer only loopback clients while server.admin_token is not set".into(),
            )
            .into());
        }
        let actor = format!("{} (loopback; no admin token set)", client_address(&state, &req));
        // Logged once the cookie comes back (`current_session`): a view is not a session yet.
        let (id, session) = state.ui.sessions.start(actor, false).await.map_err(internal)?;
        let mut response = signed_in_page(&state, &session, prefill).await?;
        response
            .add_cookie(&session::cookie(SESSION_COOKIE, id, secure(&state, &req)))
            .map_err(internal)?;
        return Ok(response);
    }
    signin_form(&state, &req, None, StatusCode::OK)
}

/// The session the request's cookie names, its sign-in logged the first time the cookie is seen.
async fn current_session(state: &AppState, req: &HttpRequest) -> Option<(String, SharedSession)> {
    let (id, session) = state.ui.sessions.current(req).await?;
    let unlogged = {
        let mut session = session::lock(&session);
        let actor = (!session.logged).then(|| session.actor.clone());
        session.logged = true;
        actor
    };
    if let Some(actor) = unlogged {
        record(state, &actor, "sign-in", None, "ok").await;
    }
    Some((id, session))
}

async fn signed_in_page(
    state: &AppState,
    session: &SharedSession,
    project: String,
) -> Result<HttpResponse, UiError> {
    let (csrf, actor, flash) = {
        let mut session = session::lock(session);
        (session.csrf.clone(), session.actor.clone(), session.flash.take())
    };
    let log = state
        .explorer
        .admin_log(LOG_SHOWN)
        .await?
        .into_iter()
        .map(|entry| LogRow {
            at: view::timestamp(entry.at),
            ok: entry.outcome.starts_with("ok"),
            actor: entry.actor,
            action: entry.action,
            target: entry.target.unwrap_or_default(),
            outcome: entry.outcome,
        })
        .collect();
    let now = unix_now();
    let tokens = state
        .tokens
        .tokens()
        .list()
        .await
        .map_err(|e| AppError::Unavailable(format!("the token store cannot be read: {e}")))?
        .into_iter()
        .rev()
        .map(|t| TokenRow {
            state: t.state(now),
            scopes: t
                .scopes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
            created: view::timestamp(t.created_at),
            expires: t.expires_at.map_or_else(|| "never".to_owned(), view::timestamp),
            name: t.name,
        })
        .collect();
    let current = state.policy.current();
    let settings = current.config();
    let stored = state
        .policy
        .stored()
        .await?
        .into_iter()
        .map(|s| RuleRow {
            id: s.id,
            rule: s.rule.to_string(),
            reason: s.rule.reason,
            added: format!("{} by {}", view::timestamp(s.created_at), s.created_by),
        })
        .collect();
    let policy = PolicyView {
        min_release_age: humantime::format_duration(settings.min_release_age).to_string(),
        exclude_newer: settings
            .exclude_newer
            .map_or_else(|| "none".to_owned(), view::timestamp),
        unknown_upload_time: settings.unknown_upload_time.as_str(),
        file_rules: state
            .policy
            .file_rules()
            .iter()
            .map(PolicyRule::to_line)
            .collect(),
        stored,
    };
    let page = AdminPage {
        signed_in: true,
        csrf,
        error: None,
        actor,
        flash,
        project,
        hex_enabled: state.hex.is_some(),
        hosted_indexes: state.hosted.names().map(str::to_owned).collect(),
        hex_repositories: state
            .hex_hosted
            .repositories()
            .iter()
            .map(|r| r.name.clone())
            .collect(),
        tokens,
        policy: Some(policy),
        warm: state.warm.latest().map(|run| super::warm::WarmView::of(&run)),
        log,
    };
    Ok(html(StatusCode::OK, render("admin.html", "admin", "", &page)?))
}

/// The sign-in form, with a fresh double-submit CSRF token unless the browser holds one.
fn signin_form(
    state: &AppState,
    req: &HttpRequest,
    error: Option<String>,
    status: StatusCode,
) -> Result<HttpResponse, UiError> {
    let csrf = match req.cookie(SIGNIN_COOKIE) {
        Some(cookie)
            if cookie.value().len() == 64 && cookie.value().bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            cookie.value().to_owned()
        }
        _ => session::random_token().map_err(internal)?,
    };
    let page = AdminPage {
        signed_in: false,
        csrf: csrf.clone(),
        error,
        actor: String::new(),
        flash: None,
        project: String::new(),
        hex_enabled: false,
        hosted_indexes: Vec::new(),
        hex_repositories: Vec::new(),
        tokens: Vec::new(),
        policy: None,
        warm: None,
        log: Vec::new(),
    };
    let body = render("admin.html", "admin", "", &page)?;
    Ok(secure_page(&mut HttpResponse::build(status))
        .cookie(session::cookie(SIGNIN_COOKIE, csrf, secure(state, req)))
        .body(body))
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

/// `POST /admin/sign-in`.
pub async fn sign_in(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<SignInForm>,
) -> Result<HttpResponse, UiError> {
    if !state.admin.token_is_set() {
        return Ok(see_other("/admin").finish());
    }
    let expected = req
        .cookie(SIGNIN_COOKIE)
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    if !session::tokens_match(&expected, &form.csrf) {
        return Err(AppError::Forbidden(
            "the sign-in form has expired or did not come from this site: reload /admin and sign in again"
                .into(),
        )
        .into());
    }
    let client = state.client(&req);
    let address = describe(client);
    match state.admin.attempt(client, Some(&form.token)) {
        Attempt::Admitted => {}
        Attempt::Failed(failure) => {
            let outcome = format!("failed: {}", failure.as_str());
            record(&state, &address, "sign-in", None, &outcome).await;
            return signin_form(
                &state,
                &req,
                Some("That is not the admin token.".into()),
                StatusCode::FORBIDDEN,
            );
        }
        Attempt::Limited { retry_after, first } => {
            if first {
                record(
                    &state,
                    &address,
                    "sign-in",
                    None,
                    "refused: too many failed attempts",
                )
                .await;
            }
            return Err(too_many_failures(&address, retry_after).into());
        }
    }
    let actor = format!("{address} (admin token)");
    let (id, _) = state
        .ui
        .sessions
        .start(actor.clone(), true)
        .await
        .map_err(internal)?;
    record(&state, &actor, "sign-in", None, "ok").await;
    let secure = secure(&state, &req);
    Ok(see_other("/admin")
        .cookie(session::cookie(SESSION_COOKIE, id, secure))
        .cookie(session::removal(SIGNIN_COOKIE, secure))
        .finish())
}

#[derive(Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    project: Option<String>,
    filename: Option<String>,
    /// A hosted index (hosted-file actions).
    index: Option<String>,
    /// Why a file is yanked, or a hex release retired (`other`, `security`, ...).
    reason: Option<String>,
    /// A hosted hex repository, a release's version and a retirement's message (`hex-retire`).
    repository: Option<String>,
    version: Option<String>,
    message: Option<String>,
    /// A token's name, scopes (space- or comma-separated) and expiry (token actions).
    name: Option<String>,
    scopes: Option<String>,
    expires: Option<String>,
    /// A policy rule's parts (`policy-add`), or its id (`policy-remove`).
    rule_ecosystem: Option<String>,
    rule_project: Option<String>,
    rule_versions: Option<String>,
    rule_action: Option<String>,
    rule_id: Option<String>,
}

/// The signed-in session of a form post whose CSRF token matches it.
pub(super) async fn authorized(
    state: &AppState,
    req: &HttpRequest,
    csrf: &str,
) -> Result<(String, SharedSession), UiError> {
    let Some((id, session)) = current_session(state, req).await else {
        return Err(AppError::Forbidden(
            "you are not signed in (or your session expired): sign in at /admin".into(),
        )
        .into());
    };
    let expected = session::lock(&session).csrf.clone();
    if !session::tokens_match(&expected, csrf) {
        tracing::warn!(client = %client_address(state, req), "admin form refused: CSRF token mismatch");
        return Err(AppError::Forbidden(
            "the form's CSRF token does not match your session: reload /admin and try again".into(),
        )
        .into());
    }
    Ok((id, session))
}

/// `POST /admin/sign-out`.
pub async fn sign_out(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<ActionForm>,
) -> Result<HttpResponse, UiError> {
    let (id, session) = authorized(&state, &req, &form.csrf).await?;
    let actor = session::lock(&session).actor.clone();
    state.ui.sessions.end(&id).await;
    record(&state, &actor, "sign-out", None, "ok").await;
    Ok(see_other("/admin")
        .cookie(session::removal(SESSION_COOKIE, secure(&state, &req)))
        .finish())
}

/// An action's outcome when the cache layer failed it.
fn failed(error: CacheError) -> String {
    format!("failed: {}", AppError::from(error))
}

/// `POST /admin/{action}`.
pub async fn act(
    state: web::Data<AppState>,
    req: HttpRequest,
    action: web::Path<String>,
    form: web::Form<ActionForm>,
) -> Result<HttpResponse, UiError> {
    let action = action.into_inner();
    let (_, session) = authorized(&state, &req, &form.csrf).await?;
    let actor = session::lock(&session).actor.clone();
    let project = project_name(form.project.as_deref());
    let mut secret = None;
    let (target, outcome): (Option<String>, Result<String, String>) = match action.as_str() {
        "refresh-project" => match project {
            Ok(name) => {
                let result = state
                    .pages
                    .revalidate(&View::All, PageRef::Project(name.clone()), Format::Html)
                    .await
                    .map(|served| {
                        format!(
                            "ok: page refreshed from upstream (X-Cache: {})",
                            served.outcome.as_str()
                        )
                    })
                    .map_err(failed);
                (Some(name), result)
            }
            Err(e) => (form.project.clone(), Err(format!("refused: {e}"))),
        },
        "forget-project" => match project {
            Ok(name) => {
                let result = state
                    .pages
                    .forget(PageRef::Project(name.clone()))
                    .await
                    .map(|was_cached| {
                        if was_cached {
                            "ok: page cache cleared".to_owned()
                        } else {
                            "ok: nothing was cached".to_owned()
                        }
                    })
                    .map_err(failed);
                (Some(name), result)
            }
            Err(e) => (form.project.clone(), Err(format!("refused: {e}"))),
        },
        "forget-hex-package" => {
            let raw = form.project.as_deref().unwrap_or("").trim();
            match (&state.hex, validate_package_name(raw)) {
                (None, _) => (
                    Some(raw.to_owned()),
                    Err("refused: the hex mirror is turned off (hex.enabled = false)".to_owned()),
                ),
                (Some(_), Err(e)) => (
                    Some(raw.to_owned()),
                    Err(format!("refused: '{raw}' is not a hex package name: {e}")),
                ),
                (Some(hex), Ok(())) => {
                    let result = hex
                        .forget_package(raw)
                        .await
                        .map(|was_cached| {
                            if was_cached {
                                "ok: registry file cleared".to_owned()
                            } else {
                                "ok: nothing was cached".to_owned()
                            }
                        })
                        .map_err(failed);
                    (Some(format!("hex/{raw}")), result)
                }
            }
        }
        "forget-list" => (
            None,
            state
                .pages
                .forget(PageRef::List)
                .await
                .map(|_| "ok: project list cache cleared".to_owned())
                .map_err(failed),
        ),
        "forget-all" => (
            None,
            state
                .pages
                .forget_all()
                .await
                .map(|pages| format!("ok: cached pages cleared: {pages}"))
                .map_err(failed),
        ),
        "evict-file" => {
            let filename = form.filename.as_deref().unwrap_or("").trim().to_owned();
            match project {
                Ok(name) if !filename.is_empty() => {
                    let result = match state.files.evict(&name, &filename).await {
                        Ok(Eviction::Removed { size }) => Ok(format!("ok: evicted ({})", view::size(size))),
                        Ok(Eviction::NotStored) => Ok("ok: the file was not cached".to_owned()),
                        Ok(Eviction::Downloading) => {
                            Err("refused: the file is being downloaded right now".to_owned())
                        }
                        Err(e) => Err(failed(e)),
                    };
                    (Some(format!("{name}/{filename}")), result)
                }
                Ok(name) => (Some(name), Err("refused: no file name given".to_owned())),
                Err(e) => (form.project.clone(), Err(format!("refused: {e}"))),
            }
        }
        "hosted-yank" | "hosted-unyank" | "hosted-delete" => {
            let change = match action.as_str() {
                "hosted-yank" => FileChange::Yank(form.reason.as_deref().unwrap_or("").trim().to_owned()),
                "hosted-unyank" => FileChange::Unyank,
                _ => FileChange::Delete,
            };
            let index = form.index.as_deref().unwrap_or("").trim();
            let filename = form.filename.as_deref().unwrap_or("").trim();
            match project {
                Ok(name) => {
                    let target = format!("{index}/{name}/{filename}");
                    let result = match state.hosted.change(index, &name, filename, &change).await {
                        Ok(_) => state
                            .pages
                            .forget_rendering(PageRef::Project(name))
                            .await
                            .map(|_| "ok".to_owned())
                            .map_err(failed),
                        Err(e @ (HostedError::NotFound(_) | HostedError::UnknownIndex(_))) => {
                            Err(format!("refused: {e}"))
                        }
                        Err(e) => Err(format!("failed: {e}")),
                    };
                    (Some(target), result)
                }
                Err(e) => (form.project.clone(), Err(format!("refused: {e}"))),
            }
        }
        "hex-retire" | "hex-unretire" => {
            let field = |value: &Option<String>| value.as_deref().unwrap_or("").trim().to_owned();
            let (repository, package, version) = (
                field(&form.repository),
                field(&form.project),
                field(&form.version),
            );
            let retirement = (action == "hex-retire").then(|| HostedRetirement {
                reason: field(&form.reason),
                message: field(&form.message),
            });
            let result = match state
                .hex_hosted
                .retire(&repository, &package, &version, retirement)
                .await
            {
                Ok(release) => Ok(match release.retired {
                    Some(r) => format!("ok: retired ({})", r.reason),
                    None => "ok: no longer retired".to_owned(),
                }),
                Err(e @ HostedError::Storage(_)) => Err(format!("failed: {e}")),
                Err(e) => Err(format!("refused: {e}")),
            };
            (Some(format!("{repository}/{package} {version}")), result)
        }
        "token-create" => {
            let name = form.name.as_deref().unwrap_or("").trim().to_owned();
            let scopes = form.scopes.as_deref().unwrap_or("");
            let scopes: Vec<&str> = scopes
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .collect();
            let now = unix_now();
            let created = match grant(&scopes, form.expires.as_deref(), now) {
                Ok((scopes, expires_at)) => {
                    state.tokens.tokens().create(&name, scopes, expires_at, now).await
                }
                Err(e) => Err(e),
            };
            let result = match created {
                Ok((record, token)) => {
                    secret = Some(token);
                    let scopes: Vec<String> = record.scopes.iter().map(ToString::to_string).collect();
                    Ok(format!("ok: created with scopes {}", scopes.join(" ")))
                }
                Err(e @ TokenError::Store(_)) => Err(format!("failed: {e}")),
                Err(e) => Err(format!("refused: {e}")),
            };
            (Some(name), result)
        }
        "token-revoke" => {
            let name = form.name.as_deref().unwrap_or("").trim().to_owned();
            let result = match state.tokens.tokens().revoke(&name, unix_now()).await {
                Ok(revoked) => Ok(format!("ok: revoked {}", revoked.len())),
                Err(e @ TokenError::NotFound(_)) => Err(format!("refused: {e}")),
                Err(e) => Err(format!("failed: {e}")),
            };
            (Some(name), result)
        }
        "policy-add" => {
            let rule_action = match form.rule_action.as_deref() {
                Some("allow") => Some(RuleAction::Allow),
                Some("deny") => Some(RuleAction::Deny),
                _ => None,
            };
            let ecosystem = Ecosystem::parse(form.rule_ecosystem.as_deref().unwrap_or("").trim());
            let reason = form.reason.as_deref().unwrap_or("").trim().to_owned();
            let rule = match (ecosystem, rule_action) {
                (Some(ecosystem), Some(rule_action)) if !reason.is_empty() => PolicyRule::new(
                    ecosystem,
                    form.rule_project.as_deref().unwrap_or(""),
                    form.rule_versions.clone(),
                    rule_action,
                    reason,
                ),
                (None, _) => Err("the ecosystem is pypi or hex".to_owned()),
                (_, None) => Err("the action is allow or deny".to_owned()),
                _ => Err("say why: a rule needs a reason".to_owned()),
            };
            match rule {
                Ok(rule) => {
                    let line = rule.to_line();
                    let target = rule.to_string();
                    let result = match state.policy.add(rule, &actor).await {
                        Ok(id) => Ok(format!("ok: rule {id} added: {line}")),
                        Err(e) => Err(failed(e)),
                    };
                    (Some(target), result)
                }
                Err(e) => (form.rule_project.clone(), Err(format!("refused: {e}"))),
            }
        }
        "policy-remove" => {
            let raw = form.rule_id.as_deref().unwrap_or("").trim();
            let result = match raw.parse::<i64>() {
                Ok(id) => match state.policy.remove(id).await {
                    Ok(Some(removed)) => Ok(format!("ok: rule {id} removed: {}", removed.rule.to_line())),
                    Ok(None) => Err(format!("refused: there is no rule {id}")),
                    Err(e) => Err(failed(e)),
                },
                Err(_) => Err(format!("refused: {raw:?} is not a rule number")),
            };
            (Some(format!("rule {raw}")), result)
        }
        "reload" => (
            None,
            state
                .reloader
                .reload(&state)
                .await
                .map(|report| format!("ok: {}", report.summary()))
                .map_err(|e| format!("refused, nothing was changed: {e}")),
        ),
        "gc" => (
            None,
            state
                .downloads
                .collect_garbage(state.evictor.as_ref())
                .await
                .map(|report| {
                    format!(
                        "ok: {} blobs stored; dropped {} catalogue rows without a blob; evicted {} ({})",
                        report.blobs,
                        report.rows_dropped,
                        report.evicted,
                        view::size(report.evicted_bytes)
                    )
                })
                .map_err(failed),
        ),
        other => {
            return Err(AppError::NotFound(format!("there is no admin action '{other}'")).into());
        }
    };
    let text = match &outcome {
        Ok(text) | Err(text) => text.clone(),
    };
    record(&state, &actor, &action, target.as_deref(), &text).await;
    let headline = match &target {
        Some(target) => format!("{action} {target}: {text}"),
        None => format!("{action}: {text}"),
    };
    session::lock(&session).flash = Some(Flash {
        kind: if outcome.is_ok() { "ok" } else { "bad" },
        text: headline,
        secret,
    });
    // The PyPI forms are filled in again with the project acted on.
    let back = match form.project.as_deref().map(|p| project_name(Some(p))) {
        Some(Ok(name)) if action != "forget-hex-package" => format!("/admin?project={name}"),
        _ => "/admin".to_owned(),
    };
    Ok(see_other(&back).finish())
}
