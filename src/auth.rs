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

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::HttpRequest;
use actix_web::http::header::AUTHORIZATION;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::error::AppError;

/// Failed admin attempts a client may make within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Past this many clients with recent failures, those whose failures are all old are forgotten.
const TRACKED_CLIENTS: usize = 10_000;

/// The admin token and the failed-attempt limit every admin entry point shares.
pub struct AdminAuth {
    token: Secret,
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
            token,
            failures: FailureLimiter::default(),
        }
    }

    /// Whether an admin token is configured (else only loopback clients are admins).
    pub fn token_is_set(&self) -> bool {
        !self.token.is_empty()
    }

    /// `client` presents `presented` (`None`: no token at all).
    pub fn attempt(&self, client: Option<IpAddr>, presented: Option<&str>) -> Attempt {
        let client = client.unwrap_or(IpAddr::from(Ipv6Addr::UNSPECIFIED));
        let now = Instant::now();
        if let Err((wait, first)) = self.failures.check(client, now) {
            let retry_after = wait.as_secs_f64().ceil().max(1.0) as u64;
            return Attempt::Limited { retry_after, first };
        }
        match presented {
            Some(token) if token_matches(&self.token, token) => Attempt::Admitted,
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

/// Whether `presented` is the configured admin token (never true when none is configured).
fn token_matches(admin_token: &Secret, presented: &str) -> bool {
    // Comparing digests keeps the comparison constant-time even in the token's length.
    !admin_token.is_empty()
        && bool::from(
            Sha256::digest(presented.as_bytes()).ct_eq(&Sha256::digest(admin_token.expose().as_bytes())),
        )
}

/// Whether the client connected from a loopback address.
pub fn from_loopback(req: &HttpRequest) -> bool {
    req.peer_addr()
        .is_some_and(|addr| addr.ip().to_canonical().is_loopback())
}

/// Recent failures per client: a sliding window of at most [`MAX_FAILURES`] instants.
#[derive(Default)]
struct FailureLimiter {
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
fn client_key(ip: IpAddr) -> IpAddr {
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
    fn check(&self, client: IpAddr, now: Instant) -> Result<(), (Duration, bool)> {
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

    fn fail(&self, client: IpAddr, now: Instant) {
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
