//! Who may use the admin endpoints and the admin pages of the UI.
//!
//! With `server.admin_token` set, tools need `Authorization: Bearer <token>` (the UI signs in with
//! the same token); without one, only loopback clients may clear the cache (a mirror reachable
//! from a network must not let anyone there flush it).

use actix_web::HttpRequest;
use actix_web::http::header::AUTHORIZATION;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::error::AppError;

/// Lets a tool's admin request through, or says why not.
pub fn authorize(admin_token: &Secret, req: &HttpRequest) -> Result<(), AppError> {
    if admin_token.is_empty() {
        return if from_loopback(req) {
            Ok(())
        } else {
            Err(AppError::Forbidden(
                "admin endpoints answer only loopback clients while server.admin_token is not set".into(),
            ))
        };
    }
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(presented) = presented else {
        return Err(AppError::Unauthorized(
            "this endpoint needs the header 'Authorization: Bearer <admin token>'".into(),
        ));
    };
    if token_matches(admin_token, presented) {
        Ok(())
    } else {
        Err(AppError::Unauthorized("the admin token is not valid".into()))
    }
}

/// Whether `presented` is the configured admin token (never true when none is configured).
pub fn token_matches(admin_token: &Secret, presented: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn from(peer: &str) -> TestRequest {
        TestRequest::default().peer_addr(peer.parse().unwrap())
    }

    #[test]
    fn without_a_token_only_loopback_peers_pass() {
        let none = Secret::from(String::new());
        for peer in ["127.0.0.1:1", "[::1]:1", "[::ffff:127.0.0.1]:1"] {
            assert!(authorize(&none, &from(peer).to_http_request()).is_ok(), "{peer}");
        }
        for peer in ["10.1.2.3:1", "192.168.0.9:1", "[2001:db8::1]:1"] {
            let err = authorize(&none, &from(peer).to_http_request()).unwrap_err();
            assert!(matches!(err, AppError::Forbidden(_)), "{peer}: {err:?}");
        }
    }

    #[test]
    fn with_a_token_the_peer_does_not_matter_but_the_token_does() {
        let token = Secret::from("t0ken".to_owned());
        let remote = || from("10.1.2.3:1");
        let ok = remote()
            .insert_header((AUTHORIZATION, "Bearer t0ken"))
            .to_http_request();
        assert!(authorize(&token, &ok).is_ok());
        let loopback_without = from("127.0.0.1:1").to_http_request();
        assert!(matches!(
            authorize(&token, &loopback_without),
            Err(AppError::Unauthorized(_))
        ));
        for header in ["Bearer t0ke", "Bearer t0ken2", "Basic t0ken", "t0ken", "Bearer"] {
            let req = remote().insert_header((AUTHORIZATION, header)).to_http_request();
            assert!(
                matches!(authorize(&token, &req), Err(AppError::Unauthorized(_))),
                "{header}"
            );
        }
    }
}
