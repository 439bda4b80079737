//! Redirects answered by a configured upstream (an index, the hex repository). The configured
//! URL is trusted whatever its address (a devpi on the LAN, a fake on loopback in the tests), and
//! so is a redirect that stays on it. A redirect that leaves it is treated like a file URL from an
//! index page: unless `pypi.allow_private_upstreams` is set it may not lead to a loopback,
//! link-local or private address, checked for IP literals here and for names when they resolve.
//!
//! reqwest's redirect policy is synchronous and cannot say which resolver the next hop uses, so
//! redirects are followed here, one hop at a time, each with the client its destination calls for.

use std::sync::Arc;

use super::HostGates;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, LOCATION};
use reqwest::{ClientBuilder, Response, StatusCode};
use url::Url;

use super::UpstreamError;
use super::files::{PublicOnlyResolver, check_url, redact};

/// More hops than any real index takes: a loop, or an upstream stalling us.
const MAX_REDIRECTS: usize = 10;

/// Where a redirect of a configured upstream leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hop {
    /// The configured upstream itself: trusted as it is.
    Configured,
    /// Somewhere else: internal addresses are refused unless allowed.
    Elsewhere,
}

/// Whether `next` is still the configured upstream: the same host and port, or the same host
/// moved from http to https on the default ports (an upgrade, not a move).
fn on_configured(configured: &Url, next: &Url) -> bool {
    if configured.host() != next.host() {
        return false;
    }
    let (from, to) = (configured.port_or_known_default(), next.port_or_known_default());
    from == to
        || (configured.scheme() == "http" && next.scheme() == "https" && from == Some(80) && to == Some(443))
}

/// The rule for one redirect hop from the upstream configured at `configured`, or why it is
/// refused.
pub(crate) fn redirect_hop(configured: &Url, next: &Url, allow_private: bool) -> Result<Hop, String> {
    if !matches!(next.scheme(), "http" | "https") {
        return Err(format!("a redirect to {}: is not followed", next.scheme()));
    }
    if on_configured(configured, next) {
        return Ok(Hop::Configured);
    }
    check_url(next, allow_private)?;
    Ok(Hop::Elsewhere)
}

/// Two clients from one set of settings, redirects off: one for the configured upstream, one
/// whose resolver refuses internal addresses (unless allowed) for hops that left it.
#[derive(Clone)]
pub(crate) struct Follower {
    configured: reqwest::Client,
    elsewhere: reqwest::Client,
    allow_private: bool,
    gates: Arc<HostGates>,
}

impl Follower {
    pub(crate) fn new(
        builder: impl Fn() -> ClientBuilder,
        allow_private: bool,
        gates: Arc<HostGates>,
    ) -> Result<Self, reqwest::Error> {
        let no_redirects = || builder().redirect(reqwest::redirect::Policy::none());
        Ok(Self {
            configured: no_redirects().build()?,
            elsewhere: no_redirects()
                .dns_resolver(PublicOnlyResolver { allow_private })
                .build()?,
            allow_private,
            gates,
        })
    }

    /// GETs `url` (on the upstream configured at `configured`) with `headers`, following
    /// redirects by the rule above. `name` names the upstream in errors.
    pub(crate) async fn get(
        &self,
        name: &str,
        configured: &Url,
        url: Url,
        headers: HeaderMap,
        deadline: Option<Duration>,
    ) -> Result<Response, UpstreamError> {
        // The deadline spans every hop and the last response's body (reqwest's request timeout
        // runs until the body has been read).
        let started = Instant::now();
        let mut url = url;
        let mut hop = Hop::Configured;
        for _ in 0..=MAX_REDIRECTS {
            let client = match hop {
                Hop::Configured => &self.configured,
                Hop::Elsewhere => &self.elsewhere,
            };
            let mut request = client.get(url.clone()).headers(headers.clone());
            if let Some(deadline) = deadline {
                request = request.timeout(deadline.saturating_sub(started.elapsed()));
            }
            let response = super::send_counted(&self.gates, request, &url)
                .await
                .map_err(|e| match hop {
                    Hop::Configured => super::transport_error(name, e),
                    Hop::Elsewhere => super::transport_error(&redact(url.as_str()), e),
                })?;
            let Some(next) = redirect_target(&response, &url) else {
                return Ok(response);
            };
            let mut next = next.map_err(|reason| refused(&url, reason))?;
            hop = redirect_hop(configured, &next, self.allow_private)
                .map_err(|reason| refused(&next, reason))?;
            if hop == Hop::Configured && next.username().is_empty() && next.password().is_none() {
                // The configured credentials go with a redirect that stays on the upstream (as a
                // browser keeps them for a relative one), and with no other.
                let _ = next.set_username(configured.username());
                let _ = next.set_password(configured.password());
            }
            url = next;
        }
        Err(refused(&url, format!("more than {MAX_REDIRECTS} redirects")))
    }
}

/// Where a redirect answer leads (`None` when `response` is no redirect), resolved against
/// `url`.
fn redirect_target(response: &Response, url: &Url) -> Option<Result<Url, String>> {
    if !matches!(
        response.status(),
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    ) {
        return None;
    }
    let location = response.headers().get(LOCATION)?;
    Some(
        location
            .to_str()
            .map_err(|_| "a redirect's Location is not text".to_owned())
            .and_then(|text| {
                url.join(text)
                    .map_err(|e| format!("a redirect's Location is no URL: {e}"))
            }),
    )
}

fn refused(url: &Url, reason: String) -> UpstreamError {
    UpstreamError::Refused {
        url: redact(url.as_str()),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(configured: &str, next: &str, allow_private: bool) -> Result<Hop, String> {
        redirect_hop(
            &Url::parse(configured).unwrap(),
            &Url::parse(next).unwrap(),
            allow_private,
        )
    }

    #[test]
    fn staying_on_the_configured_upstream_is_followed_whatever_its_address() {
        for (configured, next) in [
            ("http://127.0.0.1:3141/simple/", "http://127.0.0.1:3141/other/"),
            ("http://127.0.0.1:3141/simple/", "https://127.0.0.1:3141/simple/"),
            ("http://10.0.0.5/simple/", "http://10.0.0.5:80/x"),
            ("http://index.example/simple/", "https://index.example/simple/"),
            ("https://u:p@index.example/simple/", "https://index.example:443/y"),
        ] {
            assert_eq!(hop(configured, next, false), Ok(Hop::Configured), "{next}");
        }
    }

    #[test]
    fn leaving_it_for_an_internal_address_is_refused_unless_allowed() {
        let configured = "http://127.0.0.1:3141/simple/";
        for next in [
            "http://127.0.0.1:3142/simple/",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/simple/",
            "http://[::1]:3141/simple/",
            "http://[fd00::1]/",
        ] {
            let refusal = hop(configured, next, false).unwrap_err();
            assert!(
                refusal.contains("pypi.allow_private_upstreams"),
                "{next}: {refusal}"
            );
            assert_eq!(hop(configured, next, true), Ok(Hop::Elsewhere), "{next}");
        }
        // A name is checked when it resolves, by the client for hops elsewhere.
        assert_eq!(
            hop(configured, "http://localhost:3141/", false),
            Ok(Hop::Elsewhere)
        );
        assert_eq!(
            hop("https://index.example/", "https://files.example/a", false),
            Ok(Hop::Elsewhere)
        );
        // An https upstream moved to http on its host has left it: no downgrade is trusted.
        assert!(hop("https://10.0.0.5/", "http://10.0.0.5/", false).is_err());
    }

    #[test]
    fn only_http_is_followed() {
        for next in [
            "file:///etc/passwd",
            "ftp://index.example/x",
            "gopher://127.0.0.1:6379/",
        ] {
            assert!(hop("https://index.example/", next, true).is_err(), "{next}");
        }
    }
}
