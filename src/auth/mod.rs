//! Who may use the admin endpoints and the admin pages of the UI.
//!
//! With `server.admin_token` set, tools need `Authorization: Bearer <token>` (the UI signs in with
//! the same token); without one, only loopback clients may clear the cache (a mirror reachable
//! from a network must not let anyone there flush it).
//!
//! Every admin entry point (the API's bearer token, the UI's sign-in) goes through
//! [`AdminAuth::attempt`]: a wrong or missing token counts against the client, and a client with
//! [`MAX_FAILURES`] failures within [`FAILURE_WINDOW`] is refused without its token being looked
//! at until the oldest of them is that old, so guessing runs at a few tokens a minute.
//!
//! "The client" is [`client_addr`]'s answer everywhere (the loopback rule, the limit, the logs):
//! the TCP peer, or the address a proxy in `server.trusted_proxies` forwarded.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::HttpRequest;
use actix_web::http::header::{AUTHORIZATION, FORWARDED, HeaderMap, X_FORWARDED_FOR};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{IpRange, Secret};
use crate::error::AppError;

pub mod tokens;

/// Failed admin attempts a client may make within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Past this many clients with recent failures, those whose failures are all old are forgotten.
const TRACKED_CLIENTS: usize = 10_000;

/// The admin token and the failed-attempt limit every admin entry point shares.
pub struct AdminAuth {
    /// Replaced by a reload.
    token: crate::live::Live<Secret>,
    failures: FailureLimiter,
}

/// What became of an attempt to present the admin token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Admitted,
    /// A wrong or missing token, counted against the client.
    Failed(Failure),
    /// Too many failures: refused without looking at the token. `first` is true for the first
    /// refusal since the limit was reached (the one worth an admin log row).
    Limited {
        retry_after: u64,
        first: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    NoToken,
    WrongToken,
}

impl Failure {
    /// As the admin log says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoToken => "no bearer token",
            Self::WrongToken => "wrong token",
        }
    }
}

/// The answer to a client over its allowance.
pub fn too_many_failures(address: &str, retry_after: u64) -> AppError {
    AppError::TooManyRequests(
        format!("too many failed admin attempts from {address}: try again in {retry_after} s"),
        retry_after,
    )
}

impl AdminAuth {
    pub fn new(token: Secret) -> Self {
        Self {
            token: crate::live::Live::new(token),
            failures: FailureLimiter::default(),
        }
    }

    pub fn set_token(&self, token: Secret) {
        self.token.replace(token);
    }

    /// Whether an admin token is configured (else only loopback clients are admins).
    pub fn token_is_set(&self) -> bool {
        !self.token.current().is_empty()
    }

    /// `client` presents `presented` (`None`: no token at all).
    pub fn attempt(&self, client: Option<IpAddr>, presented: Option<&str>) -> Attempt {
        let client = client.unwrap_or(IpAddr::from(Ipv6Addr::UNSPECIFIED));
        let now = Instant::now();
        if let Err((retry_after, first)) = self.failures.allowance(client, now) {
            return Attempt::Limited { retry_after, first };
        }
        match presented {
            Some(token) if token_matches(&self.token.current(), token) => Attempt::Admitted,
            Some(_) => {
                self.failures.fail(client, now);
                Attempt::Failed(Failure::WrongToken)
            }
            None => {
                self.failures.fail(client, now);
                Attempt::Failed(Failure::NoToken)
            }
        }
    }
}

/// The token of an `Authorization: Bearer` header, if the request has one.
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// The access token a request carries: HTTP Basic (any user name and the token as password, as
/// pip, uv and twine send `__token__:<token>`; a user name alone is taken as the token, as in
/// `https://<token>@host/`), Bearer, or the token alone (hex clients send their key as the
/// whole `Authorization` value).
pub fn presented_token(req: &HttpRequest) -> Option<String> {
    use base64::Engine as _;
    if let Some(token) = bearer_token(req) {
        return Some(token.to_owned());
    }
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?.trim();
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return (!value.is_empty()).then(|| value.to_owned());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
    let token = if password.is_empty() { user } else { password };
    (!token.is_empty()).then(|| token.to_owned())
}

/// Whether `presented` is the configured token (never true when none is configured).
pub fn token_matches(configured: &Secret, presented: &str) -> bool {
    // Comparing digests keeps the comparison constant-time even in the token's length.
    !configured.is_empty()
        && bool::from(
            Sha256::digest(presented.as_bytes()).ct_eq(&Sha256::digest(configured.expose().as_bytes())),
        )
}

/// `bytes` random bytes, hex.
pub fn random_hex(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)?;
    Ok(hex::encode(buf))
}

/// Whether the client is on loopback (an unknown one is not).
pub fn is_loopback(client: Option<IpAddr>) -> bool {
    client.is_some_and(|ip| ip.is_loopback())
}

/// The client as logs name it.
pub fn describe(client: Option<IpAddr>) -> String {
    client.map_or_else(|| "unknown client".to_owned(), |ip| ip.to_string())
}

/// The client of `req`: the TCP peer, unless the peer is a trusted proxy. Then it is the last
/// address of the forwarded chain (`X-Forwarded-For`, else `Forwarded`) that is not itself a
/// trusted proxy: proxies append, so the chain is read from the proxy's end, and what a client
/// wrote at the front cannot pass for it. A trusted peer that forwards nothing is itself the
/// client (the proxy host's own requests). `None` when there is no peer, or a trusted proxy
/// forwarded an entry that is no address (`unknown`, an obfuscated name).
pub fn client_addr(req: &HttpRequest, trusted: &[IpRange]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip().to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|range| range.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let Some(chain) = forwarded_chain(req.headers()) else {
        return Some(peer);
    };
    let mut client = Some(peer);
    for hop in chain.into_iter().rev() {
        match hop {
            Some(ip) if is_trusted(ip) => client = Some(ip),
            other => return other,
        }
    }
    // Every hop is a trusted proxy: the first is where the request came from.
    client
}

/// The forwarded addresses, first (the original client) to last, or `None` without either header.
fn forwarded_chain(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let joined = |name| {
        let values: Vec<&str> = headers
            .get_all(name)
            .map(|v| v.to_str().unwrap_or("unreadable"))
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    };
    if let Some(list) = joined(X_FORWARDED_FOR) {
        return Some(list.split(',').map(node_addr).collect());
    }
    let list = joined(FORWARDED)?;
    // RFC 7239: `for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"`; a hop without `for`
    // says nothing about the client.
    let hops = list.split(',').map(|element| {
        element
            .split(';')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| key.trim().eq_ignore_ascii_case("for"))
            .and_then(|(_, value)| node_addr(value))
    });
    Some(hops.collect())
}

/// An address as forwarding headers write one: bare, quoted, `[v6]`, with or without a port.
fn node_addr(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    let ip = if let Some(rest) = node.strip_prefix('[') {
        rest.split_once(']')?.0.parse().ok()?
    } else if let Ok(ip) = node.parse::<IpAddr>() {
        ip
    } else {
        node.parse::<std::net::SocketAddrV4>()
            .ok()?
            .ip()
            .to_owned()
            .into()
    };
    Some(IpAddr::to_canonical(&ip))
}

/// Recent failures per client: a sliding window of at most [`MAX_FAILURES`] instants.
#[derive(Default)]
pub(crate) struct FailureLimiter {
    clients: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Default)]
struct Failures {
    at: VecDeque<Instant>,
    refusal_reported: bool,
}

impl Failures {
    fn forget_before(&mut self, now: Instant) {
        while self
            .at
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= FAILURE_WINDOW)
        {
            self.at.pop_front();
        }
    }
}

/// The key a client's failures are counted under: an IPv6 client usually holds a whole /64, so
/// that is one client.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

impl FailureLimiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Failures>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err((wait, first refusal))` while `client` has used up its allowance.
    pub(crate) fn check(&self, client: IpAddr, now: Instant) -> Result<(), (Duration, bool)> {
        let mut clients = self.lock();
        let Some(failures) = clients.get_mut(&client_key(client)) else {
            return Ok(());
        };
        failures.forget_before(now);
        match failures.at.front() {
            Some(oldest) if failures.at.len() >= MAX_FAILURES => {
                let first = !failures.refusal_reported;
                failures.refusal_reported = true;
                Err(((*oldest + FAILURE_WINDOW).saturating_duration_since(now), first))
            }
            _ => Ok(()),
        }
    }

    /// [`FailureLimiter::check`] with the wait in whole seconds (at least one), as
    /// `Retry-After` says it.
    pub(crate) fn allowance(&self, client: IpAddr, now: Instant) -> Result<(), (u64, bool)> {
        self.check(client, now)
            .map_err(|(wait, first)| (wait.as_secs_f64().ceil().max(1.0) as u64, first))
    }

    pub(crate) fn fail(&self, client: IpAddr, now: Instant) {
        let mut clients = self.lock();
        if clients.len() >= TRACKED_CLIENTS {
            clients.retain(|_, failures| {
                failures.forget_before(now);
                !failures.at.is_empty()
            });
        }
        let failures = clients.entry(client_key(client)).or_default();
        failures.forget_before(now);
        failures.at.push_back(now);
        failures.refusal_reported = false;
        while failures.at.len() > MAX_FAILURES {
            failures.at.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn access_tokens_are_read_from_basic_bearer_or_alone() {
        use base64::Engine as _;
        let basic = |credentials: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            )
        };
        for (header, expected) in [
            (basic("__token__:pkgm_a_b"), Some("pkgm_a_b")),
            (basic("anyone:pkgm_a_b"), Some("pkgm_a_b")),
            (basic("pkgm_a_b:"), Some("pkgm_a_b")),
            (basic("pkgm_a_b"), Some("pkgm_a_b")),
            (basic(":"), None),
            ("Basic !!!".to_owned(), None),
            ("Bearer pkgm_a_b".to_owned(), Some("pkgm_a_b")),
            ("Digest x".to_owned(), None),
            // As hex_core and mix send their key.
            ("pkgm_a_b".to_owned(), Some("pkgm_a_b")),
        ] {
            let req = TestRequest::default()
                .insert_header((AUTHORIZATION, header.as_str()))
                .to_http_request();
            assert_eq!(presented_token(&req).as_deref(), expected, "{header}");
        }
        assert_eq!(presented_token(&TestRequest::default().to_http_request()), None);
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        for (header, expected) in [
            ("Bearer t0ken", Some("t0ken")),
            ("bearer  t0ken ", Some("t0ken")),
            ("Basic t0ken", None),
            ("t0ken", None),
        ] {
            let req = TestRequest::default()
                .insert_header((AUTHORIZATION, header))
                .to_http_request();
            assert_eq!(bearer_token(&req), expected, "{header}");
        }
        assert_eq!(bearer_token(&TestRequest::default().to_http_request()), None);
    }

    #[test]
    fn the_token_decides_and_failures_are_limited_per_client() {
        let auth = AdminAuth::new(Secret::from("t0ken".to_owned()));
        let (guesser, other) = (Some(ip("10.1.2.3")), Some(ip("10.1.2.4")));
        assert_eq!(auth.attempt(guesser, Some("t0ken")), Attempt::Admitted);
        for _ in 0..MAX_FAILURES - 1 {
            assert_eq!(
                auth.attempt(guesser, Some("guess")),
                Attempt::Failed(Failure::WrongToken)
            );
        }
        assert_eq!(auth.attempt(guesser, None), Attempt::Failed(Failure::NoToken));
        for (presented, first) in [(Some("guess"), true), (Some("t0ken"), false), (None, false)] {
            match auth.attempt(guesser, presented) {
                Attempt::Limited {
                    retry_after,
                    first: f,
                } => {
                    assert!((1..=60).contains(&retry_after), "{retry_after}");
                    assert_eq!(f, first, "{presented:?}");
                }
                other => panic!("{presented:?}: {other:?}"),
            }
        }
        assert_eq!(
            auth.attempt(other, Some("t0ken")),
            Attempt::Admitted,
            "another client"
        );
        let unset = AdminAuth::new(Secret::from(String::new()));
        assert_eq!(
            unset.attempt(other, Some("")),
            Attempt::Failed(Failure::WrongToken),
            "no token configured: nothing matches"
        );
    }

    #[test]
    fn old_failures_stop_counting() {
        let limiter = FailureLimiter::default();
        let client = ip("192.0.2.1");
        let start = Instant::now();
        for i in 0..MAX_FAILURES as u64 {
            limiter.fail(client, start + Duration::from_secs(i));
        }
        let (wait, first) = limiter
            .check(client, start + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!((wait, first), (Duration::from_secs(50), true));
        assert!(
            limiter.check(client, start + FAILURE_WINDOW).is_ok(),
            "the oldest has aged out"
        );
        limiter.fail(client, start + FAILURE_WINDOW);
        let (_, first) = limiter
            .check(client, start + FAILURE_WINDOW + Duration::from_millis(1))
            .unwrap_err();
        assert!(first, "a new run of refusals is reported again");
    }

    #[test]
    fn forwarded_clients_are_believed_from_trusted_proxies_only() {
        let trusted: Vec<IpRange> = ["127.0.0.1", "10.0.0.0/8"].map(|r| r.parse().unwrap()).into();
        let client = |peer: &str, headers: &[(&str, &str)]| {
            let mut req = TestRequest::default().peer_addr(peer.parse().unwrap());
            for (name, value) in headers {
                req = req.append_header((*name, *value));
            }
            client_addr(&req.to_http_request(), &trusted).map(|ip| ip.to_string())
        };
        let xff = |value| [("X-Forwarded-For", value)];
        assert_eq!(
            client("192.0.2.1:5", &xff("127.0.0.1")).as_deref(),
            Some("192.0.2.1")
        );
        assert_eq!(client("127.0.0.1:5", &[]).as_deref(), Some("127.0.0.1"));
        assert_eq!(
            client("127.0.0.1:5", &xff("203.0.113.9")).as_deref(),
            Some("203.0.113.9")
        );
        assert_eq!(
            client("127.0.0.1:5", &xff("127.0.0.1, 203.0.113.9, 10.1.1.1")).as_deref(),
            Some("203.0.113.9"),
            "read from the proxy's end, past trusted hops"
        );
        assert_eq!(
            client(
                "127.0.0.1:5",
                &[
                    ("X-Forwarded-For", "203.0.113.9"),
                    ("X-Forwarded-For", "10.1.1.1")
                ]
            )
            .as_deref(),
            Some("203.0.113.9"),
            "several header lines are one list"
        );
        assert_eq!(
            client("127.0.0.1:5", &xff("10.2.2.2, 127.0.0.1")).as_deref(),
            Some("10.2.2.2")
        );
        assert_eq!(
            client("127.0.0.1:5", &xff("[2001:db8::1]:80")).as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(
            client("127.0.0.1:5", &xff("203.0.113.9:4711")).as_deref(),
            Some("203.0.113.9")
        );
        assert_eq!(client("127.0.0.1:5", &xff("unknown")), None);
        assert_eq!(client("127.0.0.1:5", &xff("203.0.113.9, junk")), None);
        let fwd = |value| [("Forwarded", value)];
        assert_eq!(
            client("127.0.0.1:5", &fwd("for=192.0.2.60;proto=http;by=203.0.113.43")).as_deref(),
            Some("192.0.2.60")
        );
        assert_eq!(
            client(
                "127.0.0.1:5",
                &fwd("for=\"[2001:db8:cafe::17]:4711\", For=127.0.0.1")
            )
            .as_deref(),
            Some("2001:db8:cafe::17")
        );
        assert_eq!(client("127.0.0.1:5", &fwd("for=_hidden")), None);
        assert_eq!(
            client("127.0.0.1:5", &fwd("proto=https")),
            None,
            "no `for`: no client"
        );
        assert!(is_loopback(Some("::1".parse().unwrap())));
        assert!(!is_loopback(None));
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let limiter = FailureLimiter::default();
        let now = Instant::now();
        for i in 0..MAX_FAILURES {
            limiter.fail(ip(&format!("2001:db8:1:2::{i:x}")), now);
        }
        assert!(limiter.check(ip("2001:db8:1:2:ffff::1"), now).is_err());
        assert!(limiter.check(ip("2001:db8:1:3::1"), now).is_ok());
        assert_eq!(client_key(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }
}
