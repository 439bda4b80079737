//! Admin sessions and CSRF tokens.
//!
//! A session is a random id in a cookie (HttpOnly, SameSite=Strict, Secure over https) naming
//! server-side state held in memory: whether it is signed in, its CSRF token, and a message to
//! show once. Sessions end on sign-out, after [`IDLE`] without use, and when the process stops.
//!
//! Every form carries a CSRF token. Forms of a session carry the session's token; the sign-in
//! form, shown before any session exists, uses a double-submit cookie instead, so an anonymous
//! visitor never creates server state.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite};
use moka::future::Cache;
use subtle::ConstantTimeEq;

pub const SESSION_COOKIE: &str = "pkgmirror_session";
/// The sign-in form's double-submit token.
pub const SIGNIN_COOKIE: &str = "pkgmirror_signin";
/// A session unused this long is forgotten.
pub const IDLE: Duration = Duration::from_secs(8 * 60 * 60);
const MAX_SESSIONS: u64 = 10_000;

/// A message for the next admin page, after a redirect.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Flash {
    /// `ok` or `bad`: the banner's style.
    pub kind: &'static str,
    pub text: String,
    /// A new access token, shown this once (never logged).
    pub secret: Option<String>,
}

#[derive(Debug)]
pub struct Session {
    pub csrf: String,
    /// Who signed in, for the admin log: the client address and how it was admitted.
    pub actor: String,
    pub flash: Option<Flash>,
    /// Whether its sign-in is in the admin log. A loopback session (no admin token) is logged
    /// when its cookie first comes back, not when it starts: a client that never returns the
    /// cookie (a loop of page views) would otherwise write a sign-in row per view.
    pub logged: bool,
}

pub type SharedSession = Arc<Mutex<Session>>;

pub struct Sessions {
    live: Cache<String, SharedSession>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            live: Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .time_to_idle(IDLE)
                .build(),
        }
    }
}

impl Sessions {
    /// The signed-in session the request's cookie names, if any.
    pub async fn current(&self, req: &HttpRequest) -> Option<(String, SharedSession)> {
        let id = req.cookie(SESSION_COOKIE)?.value().to_owned();
        let session = self.live.get(&id).await?;
        Some((id, session))
    }

    /// Starts a signed-in session; returns its id. `logged`: whether its sign-in is already in
    /// the admin log.
    pub async fn start(
        &self,
        actor: String,
        logged: bool,
    ) -> Result<(String, SharedSession), getrandom::Error> {
        let id = random_token()?;
        let session = Arc::new(Mutex::new(Session {
            csrf: random_token()?,
            actor,
            flash: None,
            logged,
        }));
        self.live.insert(id.clone(), Arc::clone(&session)).await;
        Ok((id, session))
    }

    pub async fn end(&self, id: &str) {
        self.live.invalidate(id).await;
    }
}

/// 32 random bytes, hex.
pub fn random_token() -> Result<String, getrandom::Error> {
    crate::auth::random_hex(32)
}

/// Whether a presented token is the expected one, in constant time.
pub fn tokens_match(expected: &str, presented: &str) -> bool {
    !expected.is_empty() && expected.as_bytes().ct_eq(presented.as_bytes()).into()
}

/// A cookie only this site's own pages send back, never readable by scripts.
pub fn cookie(name: &'static str, value: String, secure: bool) -> Cookie<'static> {
    Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .finish()
}

/// A cookie that tells the browser to drop `name`.
pub fn removal(name: &'static str, secure: bool) -> Cookie<'static> {
    let mut cookie = cookie(name, String::new(), secure);
    cookie.make_removal();
    cookie
}

pub fn lock(session: &SharedSession) -> std::sync::MutexGuard<'_, Session> {
    session.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_compared_exactly() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(tokens_match(&a, &a.clone()));
        assert!(!tokens_match(&a, &b));
        assert!(!tokens_match(&a, &a[..63]));
        assert!(!tokens_match("", ""), "an empty expected token never matches");
    }

    #[test]
    fn cookies_are_http_only_and_strict() {
        let text = cookie(SESSION_COOKIE, "abc".into(), true).to_string();
        for part in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
            assert!(text.contains(part), "{text}");
        }
        assert!(
            !cookie(SESSION_COOKIE, "abc".into(), false)
                .to_string()
                .contains("Secure")
        );
    }
}
