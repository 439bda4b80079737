//! Fetching distribution files. Their URLs come from upstream index pages, so they are input:
//! only http(s) is followed, and addresses on loopback, link-local or private networks are refused
//! (at DNS resolution, for IP literals, and on every redirect) unless
//! `pypi.allow_private_upstreams` is set, so an index page cannot aim the mirror at internal
//! services.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::Response;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::HeaderMap;
use url::Url;

use super::HostGates;
use super::UpstreamError;
use super::redirect::Follower;
use crate::config::PypiConfig;

/// Where a file URL came from, which decides whether it may point at an internal address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlOrigin {
    /// Read from an upstream's index page: input, checked as the module doc says.
    IndexPage,
    /// Built from the mirror's own configuration (a hex tarball under `hex.upstream_url`):
    /// trusted as much as the configured upstream itself.
    Configured,
}

/// A client for distribution files; archives are fetched byte for byte (no transparent
/// decompression: clients hash the exact bytes).
#[derive(Clone)]
pub struct FileClient {
    http: reqwest::Client,
    /// For [`UrlOrigin::Configured`] URLs: trusted, and so are redirects that stay on their
    /// host (`redirect.rs` says which may leave it).
    configured: Follower,
    allow_private: bool,
    gates: Arc<HostGates>,
}

impl FileClient {
    pub fn new(config: &PypiConfig, gates: Arc<HostGates>) -> Result<Self, reqwest::Error> {
        let allow_private = config.allow_private_upstreams;
        // Files are stored as sent: no transparent decompression.
        let builder = || super::client_builder(config).no_gzip();
        let configured = Follower::new(builder, allow_private, Arc::clone(&gates))?;
        let http = builder()
            .dns_resolver(PublicOnlyResolver { allow_private })
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 10 {
                    return attempt.error("too many redirects");
                }
                match check_url(attempt.url(), allow_private) {
                    Ok(()) => attempt.follow(),
                    Err(reason) => attempt.error(reason),
                }
            }))
            .build()?;
        Ok(Self {
            http,
            configured,
            allow_private,
            gates,
        })
    }

    /// Starts fetching `url`; the body is left to the caller to stream.
    pub async fn fetch(&self, url: &str, origin: UrlOrigin) -> Result<Response, UpstreamError> {
        let shown = redact(url);
        let parsed = Url::parse(url).map_err(|e| refused(&shown, &format!("not a URL: {e}")))?;
        let response = match origin {
            UrlOrigin::IndexPage => {
                check_url(&parsed, self.allow_private).map_err(|reason| refused(&shown, &reason))?;
                super::send_counted(&self.gates, self.http.get(parsed.clone()), &parsed)
                    .await
                    .map_err(|e| super::transport_error(&shown, e))?
            }
            UrlOrigin::Configured => {
                let configured = parsed.clone();
                self.configured
                    .get(&shown, &configured, parsed, HeaderMap::new(), None)
                    .await?
            }
        };
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(UpstreamError::Status {
                index: "the file host".into(),
                status: response.status().as_u16(),
                path: shown,
            })
        }
    }
}

fn refused(url: &str, reason: &str) -> UpstreamError {
    UpstreamError::Refused {
        url: url.to_owned(),
        reason: reason.to_owned(),
    }
}

/// A URL for messages and logs: credentials removed.
pub fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            if !parsed.username().is_empty() || parsed.password().is_some() {
                let _ = parsed.set_username("***");
                let _ = parsed.set_password(None);
            }
            parsed.to_string()
        }
        Err(_) => "(invalid URL)".to_owned(),
    }
}

/// Scheme and IP-literal checks; names are checked when they resolve.
pub(super) fn check_url(url: &Url, allow_private: bool) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "only http and https file URLs are followed, not {}:",
            url.scheme()
        ));
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => None,
        None => return Err("the URL has no host".into()),
    };
    match ip {
        Some(ip) if !allow_private && is_internal(ip) => Err(internal_refusal(ip)),
        _ => Ok(()),
    }
}

fn internal_refusal(ip: IpAddr) -> String {
    format!(
        "{ip} is a loopback, link-local or private address (set pypi.allow_private_upstreams to allow it)"
    )
}

/// Addresses an index page must not send the mirror to.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                // 100.64.0.0/10: carrier-grade NAT, internal in practice.
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                v6.is_loopback()
                    || v6.is_unspecified()
                    || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                    || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
            }
        },
    }
}

/// Resolves with the system resolver, then drops internal addresses (checking here, not before
/// the request, means a name cannot pass a check and then resolve elsewhere).
pub(super) struct PublicOnlyResolver {
    pub(super) allow_private: bool,
}

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| allow_private || !is_internal(a.ip()))
                .collect();
            if allowed.is_empty() {
                let reason = match addrs.first() {
                    Some(a) => format!("{host} resolves to {}", internal_refusal(a.ip())),
                    None => format!("{host} does not resolve"),
                };
                return Err(reason.into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2001:db8::1", "100.128.0.1"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn only_http_urls_on_public_literals_pass() {
        let check = |u: &str, allow| check_url(&Url::parse(u).unwrap(), allow);
        assert!(check("https://files.example/a.whl", false).is_ok());
        assert!(check("http://93.184.216.34/a.whl", false).is_ok());
        assert!(check("http://127.0.0.1:8000/a.whl", false).is_err());
        assert!(check("http://[::1]/a.whl", false).is_err());
        assert!(check("http://127.0.0.1:8000/a.whl", true).is_ok());
        assert!(check("file:///etc/passwd", true).is_err());
        assert!(check("ftp://files.example/a.whl", true).is_err());
    }

    #[test]
    fn credentials_never_reach_messages() {
        assert_eq!(
            redact("https://u:p@files.example/a.whl"),
            "https://***@files.example/a.whl"
        );
        assert_eq!(
            redact("https://files.example/a.whl"),
            "https://files.example/a.whl"
        );
    }
}
