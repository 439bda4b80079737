//! The one error type at the HTTP edge: every failure a client can see maps to a status and a
//! message that says what was wrong. The body is JSON; `http::middleware` re-renders it as an
//! HTML page for browsers.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::cache::CacheError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    /// A read without a usable access token while anonymous reads are off: answered with a
    /// Basic challenge, which pip, uv and browsers answer with the credentials they hold.
    #[error("{0}")]
    TokenRequired(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    NotAcceptable(String),
    /// The release policy holds the file back (403, with the rule and when it becomes eligible).
    #[error("{}", .0.message)]
    HeldBack(crate::policy::Hold),
    /// The request clashes with what is stored (an upload of other bytes under a taken name).
    #[error("{0}")]
    Conflict(String),
    /// The request's body did not arrive in time.
    #[error("{0}")]
    RequestTimeout(String),
    /// A known path asked with another method; the methods it takes, for `Allow`.
    #[error("{0}")]
    MethodNotAllowed(String, &'static str),
    /// The request's head is larger than `limits.max_header_size`.
    #[error("{0}")]
    HeaderTooLarge(String),
    /// Too many attempts; retry after this many seconds.
    #[error("{0}")]
    TooManyRequests(String, u64),
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    GatewayTimeout(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<CacheError> for AppError {
    fn from(err: CacheError) -> Self {
        match err {
            CacheError::NotFound(m) => Self::NotFound(m),
            CacheError::HeldBack(hold) => Self::HeldBack(hold),
            CacheError::Upstream(e) if e.is_timeout() => {
                Self::GatewayTimeout(format!("upstream timed out and nothing is cached: {e}"))
            }
            CacheError::Upstream(e) => {
                Self::BadGateway(format!("upstream failed and nothing is cached: {e}"))
            }
            CacheError::UpstreamData(m) => Self::BadGateway(m),
            CacheError::StorageUnavailable(m) => Self::Unavailable(m),
            CacheError::Storage(_) | CacheError::Internal(_) => Self::Internal(err.to_string()),
        }
    }
}

/// The JSON error body, also read back by the HTML re-rendering.
#[derive(Debug, serde::Serialize)]
pub struct ErrorBody<'a> {
    pub status: u16,
    pub error: &'a str,
    pub message: &'a str,
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) | Self::TokenRequired(_) => StatusCode::UNAUTHORIZED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Forbidden(_) | Self::HeldBack(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            Self::MethodNotAllowed(..) => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            Self::HeaderTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let message = self.to_string();
        let mut response = HttpResponse::build(status);
        match self {
            Self::Unauthorized(_) => {
                response.insert_header(("WWW-Authenticate", "Bearer"));
            }
            Self::TokenRequired(_) => {
                response.insert_header(("WWW-Authenticate", "Basic realm=\"pkgmirror\", charset=\"UTF-8\""));
            }
            // The answer depended on Accept (PEP 691 wants Vary on every negotiated answer).
            Self::NotAcceptable(_) => {
                response.insert_header(("Vary", "Accept"));
            }
            Self::TooManyRequests(_, retry_after) => {
                response.insert_header(("Retry-After", retry_after.to_string()));
            }
            // RFC 9110 requires it on a 405.
            Self::MethodNotAllowed(_, allow) => {
                response.insert_header(("Allow", *allow));
            }
            Self::HeldBack(hold) => {
                return response.json(serde_json::json!({
                    "status": "error",
                    "error": "policy",
                    "message": hold.message,
                    "check": hold.check.as_str(),
                    "rule": hold.rule,
                    "eligible_at": hold.eligible_at.map(crate::policy::format_time),
                }));
            }
            _ => {}
        }
        response.json(ErrorBody {
            status: status.as_u16(),
            error: status.canonical_reason().unwrap_or("Error"),
            message: &message,
        })
    }
}
