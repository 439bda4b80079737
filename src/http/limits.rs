//! Per-client limits at the HTTP edge (`[limits]`): a request rate and concurrent downloads per
//! client address, and the size of a request's head. A client past a limit gets 429 with
//! `Retry-After`; an oversized head gets 431.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpResponse};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::LimitsConfig;
use crate::error::AppError;

/// Downloads under way per client (by [`crate::auth::client_key`]).
type DownloadsUnderWay = Arc<Mutex<HashMap<IpAddr, u32>>>;

/// The limits in force (replaced whole on reload, which starts every client afresh).
pub struct ClientLimits {
    rate: Option<DefaultKeyedRateLimiter<IpAddr>>,
    downloads_per_client: u32,
    downloads: DownloadsUnderWay,
    max_header_size: u64,
}

impl ClientLimits {
    pub fn new(config: &LimitsConfig) -> Self {
        let rate = NonZeroU32::new(config.requests_per_second).map(|per_second| {
            let burst = NonZeroU32::new(config.burst).unwrap_or(per_second);
            DefaultKeyedRateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
        });
        Self {
            rate,
            downloads_per_client: config.downloads_per_client,
            downloads: Arc::default(),
            max_header_size: config.max_header_size,
        }
    }

    /// How long `client` must wait before its next request, if it is over its rate.
    fn over_rate(&self, client: IpAddr) -> Option<Duration> {
        let rate = self.rate.as_ref()?;
        rate.check_key(&crate::auth::client_key(client))
            .err()
            .map(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// A download slot for `client`, held until the response's body is done; `None` when it has
    /// as many under way as it may.
    fn start_download(&self, client: IpAddr) -> Option<DownloadSlot> {
        if self.downloads_per_client == 0 {
            return Some(DownloadSlot(None));
        }
        let key = crate::auth::client_key(client);
        let mut downloads = self.downloads.lock().unwrap_or_else(PoisonError::into_inner);
        let under_way = downloads.entry(key).or_default();
        if *under_way >= self.downloads_per_client {
            return None;
        }
        *under_way += 1;
        Some(DownloadSlot(Some((Arc::clone(&self.downloads), key))))
    }

    /// Forgets clients whose rate state no longer matters (their allowance is full again).
    pub fn forget_idle(&self) {
        if let Some(rate) = &self.rate {
            rate.retain_recent();
            rate.shrink_to_fit();
        }
    }
}

/// One download under way for a client; freed when dropped.
struct DownloadSlot(Option<(DownloadsUnderWay, IpAddr)>);

impl Drop for DownloadSlot {
    fn drop(&mut self) {
        let Some((downloads, key)) = &self.0 else { return };
        let mut downloads = downloads.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(under_way) = downloads.get_mut(key) {
            *under_way -= 1;
            if *under_way == 0 {
                downloads.remove(key);
            }
        }
    }
}

impl super::middleware::BodyWatcher for DownloadSlot {}

/// `req` refused with `error`. A body left unread (an upload) leaves the connection unusable for
/// another request, so it is closed.
fn refuse(req: ServiceRequest, error: AppError) -> ServiceResponse<BoxBody> {
    let mut response = HttpResponse::from_error(error);
    if super::middleware::has_body(&req) {
        response
            .head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
    }
    req.into_response(response)
}

/// The size of a request's head as it came: request line and headers.
fn head_size(req: &ServiceRequest) -> u64 {
    let target = req
        .uri()
        .path_and_query()
        .map_or(1, |target| target.as_str().len());
    let line = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    (line + headers) as u64
}

/// Applies [`ClientLimits`] to every request but `/health` and `/metrics` (a load balancer's and
/// a scraper's checks are never refused).
pub async fn limit_clients(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(state) = req
        .app_data::<actix_web::web::Data<crate::state::AppState>>()
        .cloned()
    else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let limits = state.limits.current();
    if head_size(&req) > limits.max_header_size {
        let refused = AppError::HeaderTooLarge(format!(
            "the request's head is larger than {} bytes (limits.max_header_size)",
            limits.max_header_size
        ));
        return Ok(refuse(req, refused));
    }
    let route = req
        .extensions()
        .get::<crate::metrics::RouteGroup>()
        .copied()
        .unwrap_or_else(|| crate::routes::group(req.path()));
    if matches!(route.name, "health" | "metrics") {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let Some(client) = state.client(req.request()) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    if let Some(wait) = limits.over_rate(client) {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let refused = AppError::TooManyRequests(
            format!(
                "too many requests from {client}: over limits.requests_per_second; try again in {seconds} s"
            ),
            seconds,
        );
        return Ok(refuse(req, refused));
    }
    if !matches!(route.name, "file" | "hex_tarball") {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let Some(slot) = limits.start_download(client) else {
        let refused = AppError::TooManyRequests(
            format!(
                "{client} has {} downloads under way (limits.downloads_per_client); try again when one ends",
                limits.downloads_per_client
            ),
            1,
        );
        return Ok(refuse(req, refused));
    };
    let response = next.call(req).await?;
    Ok(response.map_body(move |_, body| super::middleware::watched(body.boxed(), slot)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_second: u32, burst: u32, downloads: u32) -> ClientLimits {
        ClientLimits::new(&LimitsConfig {
            requests_per_second: per_second,
            burst,
            downloads_per_client: downloads,
            ..LimitsConfig::default()
        })
    }

    #[test]
    fn a_client_past_its_burst_waits_and_others_do_not() {
        let limits = limits(1, 3, 0);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(limits.over_rate(a), None);
        }
        let wait = limits.over_rate(a).expect("the fourth is over");
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert_eq!(limits.over_rate(b), None, "another client has its own allowance");
        // One IPv6 client holds a /64.
        let (c, d): (IpAddr, IpAddr) = ("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(limits.over_rate(c), None);
        }
        assert!(limits.over_rate(d).is_some());
        assert_eq!(self::limits(0, 0, 0).over_rate(a), None, "0: no limit");
    }

    #[test]
    fn download_slots_are_freed_when_dropped() {
        let limits = limits(0, 0, 2);
        let client: IpAddr = "10.0.0.1".parse().unwrap();
        let first = limits.start_download(client).unwrap();
        let _second = limits.start_download(client).unwrap();
        assert!(limits.start_download(client).is_none());
        drop(first);
        assert!(limits.start_download(client).is_some());
        assert!(
            self::limits(0, 0, 0).start_download(client).is_some(),
            "0: no limit"
        );
    }
}
