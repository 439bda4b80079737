//! The web UI: server-rendered pages (tera templates built into the binary) that show what the
//! mirror holds and let admins manage its cache. Pages work without JavaScript; the one script
//! only adds copy buttons.

mod admin;
mod assets;
mod charts;
mod hex_page;
mod pages;
mod session;
mod view;
mod warm;

use crate::ecosystem::Ecosystem;
use std::sync::LazyLock;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError, web};
use serde::Serialize;
use tera::{Context, Tera};

use crate::cache::CacheError;
use crate::error::AppError;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("error.html", include_str!("../../templates/error.html")),
    ("home.html", include_str!("../../templates/home.html")),
    ("packages.html", include_str!("../../templates/packages.html")),
    ("project.html", include_str!("../../templates/project.html")),
    (
        "hex_package.html",
        include_str!("../../templates/hex_package.html"),
    ),
    ("admin.html", include_str!("../../templates/admin.html")),
];

static TERA: LazyLock<Result<Tera, String>> = LazyLock::new(|| {
    let mut tera = Tera::default();
    tera.set_escape_fn(escape_html);
    tera.add_raw_templates(TEMPLATES.iter().copied())
        .map_err(|e| format!("the built-in templates do not compile: {e:?}"))?;
    Ok(tera)
});

/// Tera's default escaper also escapes `/`; the Simple API's escaper leaves URLs readable.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    crate::pypi::render::push_escaped(&mut out, text);
    out
}

/// Compiles the templates; the server calls this at start so a broken build fails there.
pub fn check_templates() -> Result<(), String> {
    TERA.as_ref().map(|_| ()).map_err(Clone::clone)
}

/// The UI's own state: admin sessions (the sign-in's failed-attempt limit is `auth`'s, shared
/// with the admin API).
#[derive(Default)]
pub struct Ui {
    sessions: session::Sessions,
}

/// The UI's routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    use crate::http::{GET_HEAD, resource};
    cfg.service(resource("/", "GET").route(web::get().to(pages::home)))
        .service(resource("/packages", "GET").route(web::get().to(pages::packages)))
        .service(resource("/packages/{ecosystem}/{project}", "GET").route(web::get().to(pages::project)))
        .service(resource("/admin", "GET").route(web::get().to(admin::page)))
        .service(resource("/admin/sign-in", "POST").route(web::post().to(admin::sign_in)))
        .service(resource("/admin/sign-out", "POST").route(web::post().to(admin::sign_out)))
        // Multipart, unlike the other actions' forms: registered before `{action}` catches it.
        .service(resource("/admin/warm", "POST").route(web::post().to(warm::upload)))
        .service(resource("/admin/{action}", "POST").route(web::post().to(admin::act)))
        .service(
            resource("/static/{file}", GET_HEAD)
                .route(web::get().to(assets::serve))
                .route(web::head().to(assets::serve)),
        );
}

/// What every page's layout needs.
#[derive(Serialize)]
struct Layout {
    version: &'static str,
    assets: assets::AssetUrls,
    /// The navigation entry to mark as current.
    nav: &'static str,
    /// The search box's text.
    search: String,
    /// The ecosystem the search box searches, when not the default (PyPI).
    ecosystem: Option<&'static str>,
}

/// Renders `template` with `data` (a struct whose fields become the template's variables).
fn render(
    template: &str,
    nav: &'static str,
    search: &str,
    data: &impl Serialize,
) -> Result<String, AppError> {
    render_in(template, nav, search, Ecosystem::Pypi, data)
}

/// [`render`] for a page of `ecosystem`, whose search box searches that ecosystem.
fn render_in(
    template: &str,
    nav: &'static str,
    search: &str,
    ecosystem: Ecosystem,
    data: &impl Serialize,
) -> Result<String, AppError> {
    let tera = TERA.as_ref().map_err(|e| AppError::Internal(e.clone()))?;
    let mut context = Context::from_serialize(data)
        .map_err(|e| AppError::Internal(format!("cannot prepare the page {template}: {e}")))?;
    context.insert(
        "page",
        &Layout {
            version: env!("CARGO_PKG_VERSION"),
            assets: assets::urls(),
            nav,
            search: search.to_owned(),
            ecosystem: (ecosystem != Ecosystem::Pypi).then(|| ecosystem.as_str()),
        },
    );
    tera.render(template, &context)
        .map_err(|e| AppError::Internal(format!("cannot render the page {template}: {e:?}")))
}

/// The headers every UI page carries: no inline script or style may run, no site may frame it,
/// and no other site learns its URLs.
pub fn secure_page(builder: &mut HttpResponseBuilder) -> &mut HttpResponseBuilder {
    builder
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        // Pages show live figures and admin state: never reuse a stored copy.
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        ))
}

fn html(status: StatusCode, body: String) -> HttpResponse {
    secure_page(&mut HttpResponse::build(status)).body(body)
}

#[derive(Serialize)]
struct SearchLink {
    text: String,
    href: String,
}

#[derive(Serialize)]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
    search: Option<SearchLink>,
}

/// An error page in the UI's style; `search` adds a link to search the PyPI projects for that
/// name.
pub fn error_html(status: StatusCode, message: &str, search: Option<&str>) -> String {
    error_page(status, message, search.map(|text| (Ecosystem::Pypi, text)))
}

/// An error page in the UI's style; `search` adds a link to search that ecosystem for a name.
fn error_page(status: StatusCode, message: &str, search: Option<(Ecosystem, &str)>) -> String {
    let reason = status.canonical_reason().unwrap_or("Error");
    let page = ErrorPage {
        status: status.as_u16(),
        reason,
        message,
        search: search.map(|(ecosystem, text)| SearchLink {
            text: text.to_owned(),
            href: view::packages_href(ecosystem, text, None, None),
        }),
    };
    render("error.html", "", "", &page).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot render an error page");
        format!("{} {reason}: {message}\n", status.as_u16())
    })
}

/// A failure on a UI page: always answered as an HTML page, whatever the client accepts.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct UiError {
    error: AppError,
    /// A name to offer a search link for (a project that is not in the catalogue), and the
    /// ecosystem to search.
    search: Option<(Ecosystem, String)>,
}

impl UiError {
    /// `error`, offering a search of the PyPI projects for `name`.
    fn with_search(error: AppError, name: &str) -> Self {
        Self::with_search_in(error, Ecosystem::Pypi, name)
    }

    /// `error`, offering a search of `ecosystem` for `name`.
    fn with_search_in(error: AppError, ecosystem: Ecosystem, name: &str) -> Self {
        Self {
            error,
            search: Some((ecosystem, name.to_owned())),
        }
    }
}

impl From<AppError> for UiError {
    fn from(error: AppError) -> Self {
        Self { error, search: None }
    }
}

impl From<CacheError> for UiError {
    fn from(error: CacheError) -> Self {
        AppError::from(error).into()
    }
}

impl ResponseError for UiError {
    fn status_code(&self) -> StatusCode {
        self.error.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        if let AppError::TooManyRequests(_, retry_after) = &self.error {
            response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
        }
        secure_page(&mut response).body(error_page(
            status,
            &self.error.to_string(),
            self.search
                .as_ref()
                .map(|(ecosystem, name)| (*ecosystem, name.as_str())),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_compile_and_error_pages_escape() {
        check_templates().unwrap();
        let page = error_html(
            StatusCode::NOT_FOUND,
            "project '<b>x</b>' is unknown",
            Some("<b>x"),
        );
        assert!(
            page.contains("project &#39;&lt;b&gt;x&lt;/b&gt;&#39; is unknown"),
            "{page}"
        );
        assert!(page.contains("href=\"/packages?q=%3Cb%3Ex\""), "{page}");
        assert!(!page.contains("<b>"));
        let hex = error_page(
            StatusCode::NOT_FOUND,
            "package 'nope' is unknown",
            Some((Ecosystem::Hex, "nope")),
        );
        assert!(
            hex.contains("href=\"/packages?ecosystem=hex&amp;q=nope\""),
            "{hex}"
        );
    }
}
