//! `/simple/{project}/{filename}` and `…/{filename}.metadata`: distribution files and their core
//! metadata, from the blob store or streamed while they download.

use actix_files::NamedFile;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use super::representation::not_modified;
use super::simple::{project_name, redirect_path};
use crate::cache::CacheOutcome;
use crate::cache::downloads::FileAnswer;
use crate::cache::files::FileKind;
use crate::error::AppError;
use crate::pypi::name::{is_safe_filename, normalize};
use crate::state::AppState;
use crate::storage::blob::{BlobBody, RangeRequest};

/// Files never change under their name (a new upload is a new file), so clients may keep them.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

pub async fn file(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AppError> {
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
        return Ok(redirect_path(&state, &req, &format!("{normalized}/{raw}")));
    }
    let (filename, kind) = match requested.strip_suffix(".metadata") {
        Some(dist) => (dist, FileKind::Metadata),
        None => (requested, FileKind::Dist),
    };
    let range = requested_range(&req);
    let answer = state
        .files
        .open(&normalized, filename, kind, complete_first(&req), range)
        .await?;
    answer_response(&req, answer, content_type(requested), range).await
}

/// The response for a file the cache answered: the stored blob (zero-copy for a local file,
/// with Range and If-None-Match), or the download as it arrives. The ETag is the sha256.
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
    let mut response = match body {
        // A Range this server ignores (several ranges, bad syntax, on HEAD): actix-files would
        // answer its first range, so the whole file goes out here.
        BlobBody::File { path, .. } if range.is_none() && req.headers().contains_key(header::RANGE) => {
            let (size, stream) = whole_file(&path)
                .await
                .map_err(|e| AppError::Internal(format!("cannot open a stored file: {e}")))?;
            HttpResponse::Ok()
                .insert_header((header::CONTENT_TYPE, content_type))
                .insert_header((header::ACCEPT_RANGES, "bytes"))
                .no_chunking(size)
                .streaming(stream)
        }
        BlobBody::File { path, .. } => {
            // actix-files answers Range (206/416) and HEAD, reading the file in chunks off the
            // worker threads; its own validators are off because the sha256 is the ETag.
            let file = NamedFile::open_async(&path)
                .await
                .map_err(|e| AppError::Internal(format!("cannot open a stored file: {e}")))?
                .set_content_type(
                    content_type
                        .parse()
                        .unwrap_or(actix_web::mime::APPLICATION_OCTET_STREAM),
                )
                .use_etag(false)
                .use_last_modified(false)
                .disable_content_disposition();
            let mut response = file.into_response(req);
            // actix-files answers a range covering the whole file (`bytes=0-`) with 200 and a
            // Content-Range, which RFC 9110 allows only on 206: it is a 206 like any range.
            if response.status() == StatusCode::OK && response.headers().contains_key(header::CONTENT_RANGE) {
                *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            }
            response
        }
        BlobBody::Stream {
            size,
            range: Some(sent),
            stream,
        } => HttpResponse::PartialContent()
            .insert_header((header::CONTENT_TYPE, content_type))
            .insert_header((
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{size}", sent.start, sent.end),
            ))
            .no_chunking(sent.end - sent.start + 1)
            .streaming(stream),
        BlobBody::Stream {
            size, range: None, ..
        } if range.is_some_and(|range| range.resolve(size).is_none()) => HttpResponse::RangeNotSatisfiable()
            .insert_header((header::CONTENT_RANGE, format!("bytes */{size}")))
            .finish(),
        // No range asked, or the index gave no size to resolve it against: the whole file,
        // which RFC 9110 allows as an answer to a Range request.
        BlobBody::Stream { size, stream, .. } => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, content_type))
            .insert_header((header::ACCEPT_RANGES, "bytes"))
            .no_chunking(size)
            .streaming(stream),
    };
    let headers = response.headers_mut();
    // Clients hash the bytes they get: an archive never carries a Content-Encoding, not even
    // the `identity` actix-files adds to ranged answers.
    headers.remove(header::CONTENT_ENCODING);
    headers.insert(header::ETAG, header_value(&etag));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    headers.insert(
        header::HeaderName::from_static("x-cache"),
        HeaderValue::from_static(outcome.as_str()),
    );
    Ok(response)
}

/// A stored file from its start, read in chunks off the worker thread, and its size.
async fn whole_file(
    path: &std::path::Path,
) -> std::io::Result<(
    u64,
    impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + use<>,
)> {
    use tokio::io::AsyncReadExt;
    const CHUNK: usize = 64 * 1024;
    let file = tokio::fs::File::open(path).await?;
    let size = file.metadata().await?.len();
    let chunks = futures::stream::try_unfold(file, |mut file| async move {
        let mut chunk = bytes::BytesMut::with_capacity(CHUNK);
        let read = file.read_buf(&mut chunk).await?;
        Ok((read > 0).then(|| (chunk.freeze(), file)))
    });
    Ok((size, chunks))
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
        assert_eq!(content_type("a-1.0.exe"), "application/octet-stream");
    }
}
