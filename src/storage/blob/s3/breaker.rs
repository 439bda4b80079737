//! The breaker: an error that says the bucket cannot be reached (no connection, a timeout, a
//! 5xx) opens it for [`RETRY_AFTER`], and meanwhile operations fail at once with
//! [`BlobError::Unavailable`] instead of each waiting for a timeout; the first one after that
//! tries the bucket again, so recovery needs nobody.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use super::Inner;
use crate::storage::blob::BlobError;

/// How long a bucket that could not be reached is left alone before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);

/// When the bucket was last found unreachable, and why; `None` while it answers.
#[derive(Default)]
pub(super) struct Breaker(Mutex<Option<(Instant, String)>>);

impl Breaker {
    /// Fails at once while open.
    fn check(&self, location: &str) -> Result<(), BlobError> {
        let breaker = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match &*breaker {
            Some((since, why)) if since.elapsed() < RETRY_AFTER => Err(BlobError::Unavailable(format!(
                "{location} is unavailable (retrying {}s after the last failure): {why}",
                RETRY_AFTER.as_secs()
            ))),
            _ => Ok(()),
        }
    }

    /// The bucket answered.
    fn close(&self, location: &str) {
        let mut breaker = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if breaker.take().is_some() {
            tracing::info!(location = %location, "S3 is reachable again");
        }
    }

    /// The bucket could not be reached: open, or keep open, from now.
    fn open(&self, location: &str, detail: String) {
        let mut breaker = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if breaker.is_none() {
            tracing::warn!(location = %location, error = %detail, "S3 cannot be reached; serving without it");
        }
        *breaker = Some((Instant::now(), detail));
    }
}

/// The status of a raw response, for telling "S3 is down" (5xx) from "S3 said no".
pub trait HasStatus {
    fn status(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Whether `err` says the bucket cannot be reached, rather than that it refused.
fn unreachable<E, R: HasStatus>(err: &SdkError<E, R>) -> bool {
    match err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(e) => e.raw().status() >= 500,
        _ => false,
    }
}

/// `err` for a message: S3's error code and message when it sent them.
fn detail<E, R>(err: &SdkError<E, R>) -> String
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match err.code() {
        Some(code) => format!("{code}: {}", err.message().unwrap_or("no message")),
        None => DisplayErrorContext(err).to_string(),
    }
}

impl Inner {
    /// Fails at once while the breaker is open.
    pub(super) fn check(&self) -> Result<(), BlobError> {
        self.breaker.check(&self.location)
    }

    pub(super) fn succeeded(&self) {
        self.breaker.close(&self.location);
    }

    /// Maps an SDK error to a [`BlobError`]; one that says the bucket cannot be reached (no
    /// connection, a timeout, a 5xx) opens the breaker.
    pub(super) fn failed<E, R>(&self, action: &str, key: &str, err: SdkError<E, R>) -> BlobError
    where
        E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
        R: std::fmt::Debug + HasStatus + Send + Sync + 'static,
    {
        let detail = detail(&err);
        let message = format!("{action} {key} in {}: {detail}", self.location);
        if unreachable(&err) {
            self.breaker.open(&self.location, detail);
            BlobError::Unavailable(message)
        } else {
            BlobError::Remote(message)
        }
    }
}
