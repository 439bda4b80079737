//! Cross-cutting request handling: one access-log line per request, and error pages in HTML for
//! browsers (tools get the JSON body every error starts with).

use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::{HttpMessage, ResponseError};
use futures::StreamExt;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse};

use crate::error::AppError;
use crate::metrics::METRICS;

/// Which successful cache hits get an access-log line: one in `log.access_hit_sample`, the
/// first included. Hits are most requests under load, and each alike.
pub struct HitSampler {
    every: NonZeroU64,
    seen: AtomicU64,
}

impl HitSampler {
    pub fn new(every: NonZeroU64) -> Self {
        Self {
            every,
            seen: AtomicU64::new(0),
        }
    }

    fn take(&self) -> bool {
        self.seen
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(self.every.get())
    }
}

/// Logs method, path, status, cache outcome and duration of every request (successful cache
/// hits sampled, see [`HitSampler`]).
pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let version = http_version(req.version());
    // The client as the admin rules see it: behind a trusted proxy, the forwarded address.
    let peer = req
        .app_data::<actix_web::web::Data<crate::state::AppState>>()
        .map_or_else(
            || req.peer_addr().map(|a| a.ip().to_canonical()),
            |state| state.client(req.request()),
        )
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    let response = next.call(req).await?.map_into_boxed_body();
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    if status < 400
        && cache == "hit"
        && let Some(state) = response
            .request()
            .app_data::<actix_web::web::Data<crate::state::AppState>>()
        && !state.access_hits.take()
    {
        return Ok(response);
    }
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let error = response.response().error().map(ToString::to_string);
    if status >= 500 {
        tracing::warn!(target: "pkgmirror::access", %method, %path, version, status, cache, duration_ms, peer, error, "request");
    } else {
        tracing::info!(target: "pkgmirror::access", %method, %path, version, status, cache, duration_ms, peer, "request");
    }
    Ok(response)
}

/// Counts every request in the metrics: route group, method, status and time to the response
/// head; and the body bytes sent, when the body is done (or dropped by a client that left).
pub async fn measure(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let started = Instant::now();
    let route = crate::routes::group(req.path());
    // The limits (inside) read the group from here rather than work it out again.
    req.extensions_mut().insert(route);
    let method = req.method().clone();
    let response = next.call(req).await?;
    METRICS.request(
        route,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    let cache = crate::metrics::cache_label(response.headers().get("x-cache").and_then(|v| v.to_str().ok()));
    let tally = Tally {
        route,
        cache,
        sent: 0,
    };
    Ok(response.map_body(move |_, body| watched(body.boxed(), tally)))
}

/// Something that goes with a response body to its end: told of each chunk sent, dropped when
/// the body is done or dropped (a client that left).
pub(super) trait BodyWatcher: Unpin + 'static {
    fn sent(&mut self, _bytes: usize) {}
}

/// `body`, with `watcher` told of what it sends.
pub(super) fn watched(body: BoxBody, watcher: impl BodyWatcher) -> BoxBody {
    BoxBody::new(WatchedBody { body, watcher })
}

struct WatchedBody<W> {
    body: BoxBody,
    watcher: W,
}

impl<W: BodyWatcher> MessageBody for WatchedBody<W> {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> actix_web::body::BodySize {
        self.body.size()
    }

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<bytes::Bytes, Self::Error>>> {
        // `WatchedBody` is Unpin: `BoxBody` is, and `W` is held by value but never pinned.
        let this = std::pin::Pin::into_inner(self);
        let polled = std::pin::Pin::new(&mut this.body).poll_next(cx);
        if let std::task::Poll::Ready(Some(Ok(chunk))) = &polled {
            this.watcher.sent(chunk.len());
        }
        polled
    }

    fn try_into_bytes(self) -> Result<bytes::Bytes, Self> {
        // A body known whole (a page from memory) goes out in one write.
        let Self { body, mut watcher } = self;
        match body.try_into_bytes() {
            Ok(bytes) => {
                watcher.sent(bytes.len());
                Ok(bytes)
            }
            Err(body) => Err(Self { body, watcher }),
        }
    }
}

/// What a response body sent, counted in the metrics when it ends.
struct Tally {
    route: crate::metrics::RouteGroup,
    cache: &'static str,
    sent: u64,
}

impl BodyWatcher for Tally {
    fn sent(&mut self, bytes: usize) {
        self.sent += bytes as u64;
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        if self.sent > 0 {
            METRICS.served(self.route, self.cache, self.sent);
        }
    }
}

fn http_version(version: actix_web::http::Version) -> &'static str {
    use actix_web::http::Version;
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/?",
    }
}

/// Whether the request announces a body.
pub(super) fn has_body(req: &ServiceRequest) -> bool {
    req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|len| len.as_bytes() != b"0")
}

/// Gives a request body `server.request_body_timeout` to arrive: a client trickling a body (or
/// announcing one and sending nothing) would otherwise hold its connection and its handler for as
/// long as it likes. Past the deadline the body reads fail, and the answer is 408 on a closing
/// connection, whatever the handler made of the failed read.
pub async fn body_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let has_body = has_body(&req);
    let timeout = req
        .app_data::<actix_web::web::Data<crate::state::AppState>>()
        .map(|state| state.request_body_timeout);
    let (Some(timeout), true) = (timeout, has_body) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let expired = Arc::new(AtomicBool::new(false));
    let deadline = tokio::time::Instant::now() + timeout;
    let payload = req.take_payload();
    let flag = Arc::clone(&expired);
    let body = futures::stream::unfold(Some(payload), move |payload| {
        let flag = Arc::clone(&flag);
        async move {
            let mut payload = payload?;
            match tokio::time::timeout_at(deadline, payload.next()).await {
                Ok(Some(chunk)) => Some((chunk, Some(payload))),
                Ok(None) => None,
                Err(_) => {
                    flag.store(true, Ordering::Relaxed);
                    let late = std::io::Error::new(std::io::ErrorKind::TimedOut, "request body too slow");
                    Some((Err(PayloadError::Io(late)), None))
                }
            }
        }
    })
    // Readers may poll again after the end (actix-multipart does); an unfused unfold panics.
    .fuse();
    let body: std::pin::Pin<Box<dyn futures::Stream<Item = Result<bytes::Bytes, PayloadError>>>> =
        Box::pin(body);
    req.set_payload(Payload::from(body));
    let response = next.call(req).await?.map_into_boxed_body();
    if !expired.load(Ordering::Relaxed) {
        return Ok(response);
    }
    let error = AppError::RequestTimeout(format!(
        "the request body did not arrive within {} (server.request_body_timeout)",
        humantime::format_duration(timeout)
    ));
    let (req, _) = response.into_parts();
    let mut late = error.error_response();
    late.head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    Ok(ServiceResponse::new(req, late))
}

/// With `server.anonymous_read = false`, every read needs an access token (any active token
/// may read). The admin API and pages keep their own sign-in; `/health` and the UI's assets stay
/// open.
pub async fn read_access(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let path = req.path();
    let open = path == "/health"
        || path == "/metrics"
        || path.starts_with("/static/")
        || path == "/admin"
        || path.starts_with("/admin/")
        || path.starts_with("/cache/")
        || path.starts_with("/policy/");
    if !open && let Some(state) = req.app_data::<actix_web::web::Data<crate::state::AppState>>() {
        let admitted = state
            .require_token(req.request(), &crate::auth::tokens::Scope::Read)
            .await;
        if let Err(refused) = admitted {
            // A body left unread (an upload) leaves the connection unusable for another request.
            let mut response = HttpResponse::from_error(refused);
            if has_body(&req) {
                response
                    .head_mut()
                    .set_connection_type(actix_web::http::ConnectionType::Close);
            }
            return Ok(req.into_response(response));
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// Re-renders an [`AppError`] as a small HTML page when the client is a browser.
pub async fn html_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let wants_html = prefers_html(req.headers().get(header::ACCEPT));
    let response = next.call(req).await?.map_into_boxed_body();
    if !wants_html {
        return Ok(response);
    }
    let Some(app_error) = response.response().error().and_then(|e| e.as_error::<AppError>()) else {
        return Ok(response);
    };
    let status = response.status();
    let page = crate::web::error_html(status, &app_error.to_string(), None);
    let (req, old) = response.into_parts();
    let mut html = HttpResponse::build(status);
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            html.append_header((name.clone(), value.clone()));
        }
    }
    let html = crate::web::secure_page(&mut html).body(page);
    Ok(ServiceResponse::new(req, html))
}

/// A browser lists `text/html` before any PyPI JSON type; pip and uv list JSON first.
fn prefers_html(accept: Option<&HeaderValue>) -> bool {
    let Some(accept) = accept.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let lower = accept.to_ascii_lowercase();
    match (lower.find("text/html"), lower.find("+json")) {
        (Some(html), Some(json)) => html < json,
        (Some(_), None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hit_in_n_is_logged_the_first_included() {
        let sampler = HitSampler::new(NonZeroU64::new(3).unwrap());
        let taken: Vec<bool> = (0..7).map(|_| sampler.take()).collect();
        assert_eq!(taken, [true, false, false, true, false, false, true]);
        let all = HitSampler::new(NonZeroU64::MIN);
        assert!((0..5).all(|_| all.take()));
    }

    #[test]
    fn browsers_get_html_and_tools_get_json() {
        let cases = [
            (
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                true,
            ),
            (
                "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01",
                false,
            ),
            ("*/*", false),
            ("application/json", false),
        ];
        for (accept, want) in cases {
            assert_eq!(
                prefers_html(Some(&HeaderValue::from_static(accept))),
                want,
                "{accept}"
            );
        }
        assert!(!prefers_html(None));
    }
}
