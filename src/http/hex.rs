//! `/hex/...`: the hex repository mirror (mix's `HEX_MIRROR`, rebar3's `HEX_CDN`).
//!
//! Registry files go out byte for byte as the upstream signed them, never with a
//! `Content-Encoding` (clients gunzip the body themselves and check the signature on it).
//! `/repos/{name}/...` of a hosted repository (`[[hex.hosted]]`) is served by `cache::hex_hosted`.
//! Other private organisations are refused: their packages must not land in a cache every user
//! of the mirror can read.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::files::{answer_response, complete_first, requested_range};
use super::representation::not_modified;
use crate::cache::hex::HexMirror;
use crate::cache::pages::Served;
use crate::error::AppError;
use crate::hex::{PathError, RegistryFile, RepoPath, parse_path};
use crate::state::AppState;

/// Registry files change: clients may store them but must revalidate (a 304 is cheap).
const REGISTRY_CACHE_CONTROL: &str = "public, max-age=0, must-revalidate";
/// Clients do not look at it; octet-stream keeps proxies from compressing or sniffing.
const CONTENT_TYPE: &str = "application/octet-stream";

pub(super) fn mirror(state: &AppState) -> Result<&HexMirror, AppError> {
    state
        .hex
        .as_ref()
        .ok_or_else(|| AppError::NotFound("the hex mirror is turned off (hex.enabled = false)".into()))
}

pub async fn repository(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AppError> {
    let raw = req.match_info().get("path").unwrap_or("");
    // actix leaves `%2B` and friends encoded in the path; versions may hold a `+`.
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| AppError::BadRequest(format!("invalid path '{raw}': not UTF-8")))?;
    let path = parse(&decoded)?;
    if let RepoPath::Organization { org, rest } = &path
        && state.hex_hosted.repository(org).is_some()
    {
        return hosted(&state, &req, org, parse(rest)?).await;
    }
    let hex = mirror(&state)?;
    match path {
        RepoPath::Names => registry(&req, hex, RegistryFile::Names).await,
        RepoPath::Versions => registry(&req, hex, RegistryFile::Versions).await,
        RepoPath::Package { name } => registry(&req, hex, RegistryFile::Package(name)).await,
        RepoPath::Tarball { name, version } => {
            let range = requested_range(&req);
            let answer = hex.tarball(&name, &version, complete_first(&req), range).await?;
            answer_response(&req, answer, CONTENT_TYPE, range).await
        }
        RepoPath::Organization { org, .. } => Err(AppError::NotFound(format!(
            "private organisation repositories (/repos/{org}/...) are not mirrored: a shared cache would \
             hand their packages to every user of the mirror; configure the client to reach this \
             organisation's repository upstream directly"
        ))),
        // Clients that pin the mirror's key fetch it here.
        RepoPath::PublicKey if let Some(pem) = hex.own_public_key() => Ok(HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "application/x-pem-file"))
            .insert_header((header::CACHE_CONTROL, REGISTRY_CACHE_CONTROL))
            .body(pem.to_owned())),
        other @ (RepoPath::Docs { .. } | RepoPath::PublicKey | RepoPath::Installs { .. }) => {
            let content_type = match &other {
                RepoPath::PublicKey => "application/x-pem-file",
                RepoPath::Installs { path } if path.ends_with(".csv") => "text/csv; charset=utf-8",
                _ => CONTENT_TYPE,
            };
            let answer = hex.other_file(&other).await?;
            answer_response(&req, answer, content_type, requested_range(&req)).await
        }
    }
}

fn parse(path: &str) -> Result<RepoPath, AppError> {
    parse_path(path).map_err(|e| match e {
        PathError::Unknown(_) => AppError::NotFound(format!("{e} (see /hex/names for what is mirrored)")),
        PathError::Invalid { .. } => AppError::BadRequest(e.to_string()),
    })
}

/// `/hex/repos/{name}/...` of a hosted repository: its registry files and public key made here,
/// hosted tarballs from the blob store, other names' through the mirror (with `fallback`).
async fn hosted(
    state: &AppState,
    req: &HttpRequest,
    repository: &str,
    path: RepoPath,
) -> Result<HttpResponse, AppError> {
    let hosted = &state.hex_hosted;
    let mirror = state.hex.as_ref();
    let file = match path {
        RepoPath::Names => RegistryFile::Names,
        RepoPath::Versions => RegistryFile::Versions,
        RepoPath::Package { name } => RegistryFile::Package(name),
        RepoPath::Tarball { name, version } => {
            let range = requested_range(req);
            let answer = hosted
                .tarball(repository, &name, &version, mirror, complete_first(req), range)
                .await?;
            return answer_response(req, answer, CONTENT_TYPE, range).await;
        }
        RepoPath::PublicKey => {
            let pem = hosted
                .repository(repository)
                .map(|r| r.public_key().to_owned())
                .unwrap_or_default();
            return Ok(HttpResponse::Ok()
                .insert_header((header::CONTENT_TYPE, "application/x-pem-file"))
                .insert_header((header::CACHE_CONTROL, REGISTRY_CACHE_CONTROL))
                .body(pem));
        }
        other => {
            return Err(AppError::NotFound(format!(
                "the hosted hex repository {repository:?} serves /names, /versions, /packages/NAME, \
                 /tarballs/NAME-VERSION.tar and /public_key, not {}",
                other.path()
            )));
        }
    };
    registry_response(req, hosted.registry(repository, file, mirror).await?)
}

async fn registry(req: &HttpRequest, hex: &HexMirror, file: RegistryFile) -> Result<HttpResponse, AppError> {
    registry_response(req, hex.registry(file).await?)
}

fn registry_response(req: &HttpRequest, served: Served) -> Result<HttpResponse, AppError> {
    let Served { page, outcome } = served;
    let etag = page.header.etag.as_str();
    if not_modified(req, etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .insert_header((header::CACHE_CONTROL, REGISTRY_CACHE_CONTROL))
            .insert_header(("X-Cache", outcome.as_str()))
            .finish());
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, CONTENT_TYPE))
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, REGISTRY_CACHE_CONTROL))
        .insert_header(("X-Cache", outcome.as_str()))
        .body(page.identity.clone()))
}
