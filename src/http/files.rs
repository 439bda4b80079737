//! `/simple/{project}/{filename}`, `…/{filename}.metadata` and `…/{filename}.provenance`:
//! distribution files, their core metadata and their provenance, from the blob store or streamed
//! while they download.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};

use super::file_body::FileBody;
use super::representation::not_modified;
use super::simple::{project_name, redirect, view_of};
use crate::cache::CacheOutcome;
use crate::cache::downloads::FileAnswer;
use crate::cache::files::FileKind;
use crate::error::AppError;
use crate::pypi::name::{is_safe_filename, normalize};
use crate::state::AppState;
use crate::storage::blob::{BlobBody, ByteRange, RangeRequest};

/// Files never change under their name (a new upload is a new file), so clients may keep them.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

pub async fn file(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AppError> {
    let (view, prefix) = view_of(&state, &req)?;
    let project = project_name(&req)?;
    let raw = req.match_info().get("filename").unwrap_or("");
    // actix's router leaves `%2B`, `%2F` and `%25` encoded in path segments; our own pages
    // encode a local version's `+` as `%2B`, so finish decoding here (and only once).
    let requested = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| AppError::BadRequest(format!("invalid file name '{raw}': not UTF-8")))?;
    let requested: &str = &requested;
    if !is_safe_filename(requested) {
        return Err(AppError::BadRequest(format!("invalid file name '{requested}'")));
    }
    let normalized = normalize(project);
    if normalized != project {
        return Ok(redirect(&state, &req, &format!("{prefix}/{normalized}/{raw}")));
    }
    let (filename, kind) = FileKind::of(requested);
    let range = requested_range(&req);
    let answer = state
        .files
        .open(&view, &normalized, filename, kind, complete_first(&req), range)
        .await?;
    answer_response(&req, answer, content_type(requested), range).await
}

/// The response for a file the cache answered: the stored blob (with Range, If-Range and
/// If-None-Match), or the download as it arrives. The ETag is the sha256.
pub(super) async fn answer_response(
    req: &HttpRequest,
    answer: FileAnswer,
    content_type: &'static str,
    range: Option<RangeRequest>,
) -> Result<HttpResponse, AppError> {
    Ok(match answer {
        FileAnswer::Stored {
            body,
            sha256,
            outcome,
        } => stored_response(req, body, &sha256, outcome, content_type, range).await?,
        FileAnswer::Streaming { stream, size, sha256 } => {
            let mut response = HttpResponse::Ok();
            response
                .insert_header((header::CONTENT_TYPE, content_type))
                .insert_header((header::CACHE_CONTROL, IMMUTABLE))
                .insert_header(("X-Cache", CacheOutcome::Miss.as_str()));
            if let Some(sha256) = sha256 {
                response.insert_header((header::ETAG, format!("\"{sha256}\"")));
            }
            match size {
                Some(size) => response.no_chunking(size).streaming(stream),
                None => response.streaming(stream),
            }
        }
    })
}

async fn stored_response(
    req: &HttpRequest,
    body: BlobBody,
    sha256: &str,
    outcome: CacheOutcome,
    content_type: &'static str,
    range: Option<RangeRequest>,
) -> Result<HttpResponse, AppError> {
    let etag = format!("\"{sha256}\"");
    if not_modified(req, &etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .insert_header((header::CACHE_CONTROL, IMMUTABLE))
            .insert_header(("X-Cache", outcome.as_str()))
            .finish());
    }
    // If-Range (RFC 9110, 13.1.5): the range only applies to the bytes the client already has.
    let range = range.filter(|_| if_range_holds(req, &etag));
    let mut response = match body {
        BlobBody::File { file, size, .. } => match range.map(|range| range.resolve(size)) {
            Some(Some(sent)) => partial_content(content_type, sent, size).body(FileBody::new(
                file,
                sent.start,
                sent.end - sent.start + 1,
            )),
            Some(None) => range_not_satisfiable(size),
            // No range asked, or one this server ignores (several ranges, bad syntax, on HEAD):
            // the whole file, which RFC 9110 allows as an answer to any Range request.
            None => whole_file(content_type).body(FileBody::new(file, 0, size)),
        },
        // A streaming store (S3) sent only the bytes of the range already.
        BlobBody::Stream {
            size,
            range: Some(sent),
            stream,
        } => partial_content(content_type, sent, size)
            .no_chunking(sent.end - sent.start + 1)
            .streaming(stream),
        BlobBody::Stream {
            size, range: None, ..
        } if range.is_some_and(|range| range.resolve(size).is_none()) => range_not_satisfiable(size),
        // No range asked, or the index gave no size to resolve it against: the whole file.
        BlobBody::Stream { size, stream, .. } => whole_file(content_type).no_chunking(size).streaming(stream),
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, header_value(&etag));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    headers.insert(
        header::HeaderName::from_static("x-cache"),
        HeaderValue::from_static(outcome.as_str()),
    );
    Ok(response)
}

fn whole_file(content_type: &'static str) -> HttpResponseBuilder {
    let mut response = HttpResponse::Ok();
    response
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::ACCEPT_RANGES, "bytes"));
    response
}

fn partial_content(content_type: &'static str, sent: ByteRange, size: u64) -> HttpResponseBuilder {
    let mut response = HttpResponse::PartialContent();
    response
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{size}", sent.start, sent.end),
        ));
    response
}

fn range_not_satisfiable(size: u64) -> HttpResponse {
    HttpResponse::RangeNotSatisfiable()
        .insert_header((header::CONTENT_RANGE, format!("bytes */{size}")))
        .finish()
}

/// Whether a Range request may be answered with a range: no `If-Range`, or one naming our
/// ETag (a date never matches: the ETag is the only validator files carry).
fn if_range_holds(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get(header::IF_RANGE)
        .is_none_or(|value| value.to_str().is_ok_and(|value| value.trim() == etag))
}

/// A range (or a HEAD, which must announce the final length) is answered from the stored blob,
/// so a first request of that kind waits for the download to finish.
pub(super) fn complete_first(req: &HttpRequest) -> bool {
    req.method() == actix_web::http::Method::HEAD || req.headers().contains_key(header::RANGE)
}

/// The single byte range a GET asks for, if any (HEAD answers never carry a body).
pub(super) fn requested_range(req: &HttpRequest) -> Option<RangeRequest> {
    if req.method() != actix_web::http::Method::GET {
        return None;
    }
    RangeRequest::parse(req.headers().get(header::RANGE)?.to_str().ok()?)
}

fn header_value(value: &str) -> HeaderValue {
    // An ETag built from a hex digest is always a valid header value.
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

/// The Content-Type for a file by its kind (never an encoding: see above).
fn content_type(filename: &str) -> &'static str {
    let lower = filename.to_ascii_lowercase();
    if lower.ends_with(".metadata") {
        "text/plain; charset=utf-8"
    } else if lower.ends_with(".provenance") {
        "application/json"
    } else if lower.ends_with(".whl") || lower.ends_with(".zip") || lower.ends_with(".egg") {
        "application/zip"
    } else if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
        "application/gzip"
    } else if lower.ends_with(".tar.bz2") {
        "application/x-bzip2"
    } else if lower.ends_with(".tar.xz") {
        "application/x-xz"
    } else if lower.ends_with(".asc") {
        "application/pgp-signature"
    } else {
        "application/octet-stream"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_follow_the_file_kind() {
        assert_eq!(content_type("a-1.0-py3-none-any.whl"), "application/zip");
        assert_eq!(content_type("a-1.0.tar.gz"), "application/gzip");
        assert_eq!(
            content_type("a-1.0-py3-none-any.whl.metadata"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(content_type("a-1.0.tar.gz.asc"), "application/pgp-signature");
        assert_eq!(content_type("a-1.0.tar.gz.provenance"), "application/json");
        assert_eq!(content_type("a-1.0.exe"), "application/octet-stream");
    }
}
