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

#[cfg(test)]
mod tests {
    use aws_sdk_s3::config::http::HttpResponse;
    use aws_sdk_s3::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_sdk_s3::primitives::SdkBody;

    use super::super::testing;
    use super::*;
    use crate::storage::blob::BlobStore;

    type GetError = SdkError<GetObjectError, HttpResponse>;

    const LOCATION: &str = "bucket 'b' (prefix '') at http://127.0.0.1:1";

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(status.try_into().unwrap(), SdkBody::empty())
    }

    /// An error S3 answered with: `status`, and `code` in the body.
    fn refused(status: u16, code: &str) -> GetError {
        let meta = ErrorMetadata::builder().code(code).message("said so").build();
        SdkError::service_error(GetObjectError::generic(meta), response(status))
    }

    fn refused_connection() -> GetError {
        SdkError::dispatch_failure(ConnectorError::io("connection refused".into()))
    }

    #[test]
    fn an_open_breaker_fails_at_once_until_retry_after_has_passed() {
        let breaker = Breaker::default();
        breaker.check(LOCATION).unwrap();
        breaker.open(LOCATION, "no connection".to_owned());
        let Err(BlobError::Unavailable(message)) = breaker.check(LOCATION) else {
            panic!("the open breaker let a call through");
        };
        assert_eq!(
            message,
            format!("{LOCATION} is unavailable (retrying 10s after the last failure): no connection")
        );
        // Another failure while open restarts the wait and says why.
        breaker.open(LOCATION, "timed out".to_owned());
        let err = breaker.check(LOCATION).unwrap_err().to_string();
        assert!(err.ends_with(": timed out"), "{err}");

        // Once RETRY_AFTER has passed, a call goes through to try the bucket again, though the
        // breaker stays open until something succeeds.
        let long_ago = Instant::now().checked_sub(RETRY_AFTER).unwrap();
        breaker.0.lock().unwrap().as_mut().unwrap().0 = long_ago;
        breaker.check(LOCATION).unwrap();
        assert!(breaker.0.lock().unwrap().is_some());
        breaker.close(LOCATION);
        assert!(breaker.0.lock().unwrap().is_none());
        breaker.check(LOCATION).unwrap();
    }

    #[test]
    fn no_connection_a_timeout_or_a_5xx_is_unreachable_a_refusal_is_not() {
        assert!(unreachable(&refused_connection()));
        assert!(unreachable(&GetError::timeout_error("read timed out")));
        assert!(unreachable(&GetError::response_error(
            "truncated answer",
            response(200)
        )));
        for status in [500, 503] {
            assert!(unreachable(&refused(status, "InternalError")), "{status}");
        }
        for status in [400, 403, 404, 499] {
            assert!(!unreachable(&refused(status, "AccessDenied")), "{status}");
        }
        assert!(!unreachable(&GetError::construction_failure("bad request")));
    }

    #[test]
    fn detail_is_s3s_code_and_message_or_the_whole_cause() {
        assert_eq!(detail(&refused(403, "AccessDenied")), "AccessDenied: said so");
        let meta = ErrorMetadata::builder().code("SlowDown").build();
        let no_message = SdkError::service_error(GetObjectError::generic(meta), response(503));
        assert_eq!(detail(&no_message), "SlowDown: no message");
        let cause = detail(&refused_connection());
        assert!(cause.contains("connection refused"), "{cause}");
    }

    #[tokio::test]
    async fn only_unreachable_errors_open_the_stores_breaker() {
        let dir = tempfile::tempdir().unwrap();
        let store = testing::unreachable_store(dir.path()).await;
        let inner = &store.inner;

        let err = inner.failed("reading", "some/key", refused(403, "AccessDenied"));
        let BlobError::Remote(message) = err else {
            panic!("a refusal is {err:?}");
        };
        assert_eq!(
            message,
            format!("reading some/key in {}: AccessDenied: said so", inner.location)
        );
        inner.check().unwrap();

        let err = inner.failed("reading", "some/key", refused(503, "ServiceUnavailable"));
        assert!(matches!(err, BlobError::Unavailable(_)), "{err:?}");
        assert!(matches!(inner.check(), Err(BlobError::Unavailable(_))));
        inner.succeeded();
        inner.check().unwrap();
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_opens_the_breaker_and_calls_fail_fast_while_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = testing::unreachable_store(dir.path()).await;
        let sha = testing::sha256(b"some blob");
        let key = store.inner.keys.blob(&sha).unwrap();
        let fail_fast = format!(
            "{} is unavailable (retrying 10s after the last failure): ",
            store.location()
        );

        // The first call tries, cannot connect, and opens the breaker.
        let Err(BlobError::Unavailable(tried)) = store.head(&sha).await else {
            panic!("no connection is not Unavailable");
        };
        assert!(
            tried.starts_with(&format!("reading {key} in {}: ", store.location())),
            "{tried}"
        );
        // While open, every call fails at once with the breaker's message: no request was made.
        let failures = [
            store.get(&sha, None).await.err(),
            store.head(&sha).await.err(),
            store.delete(&sha).await.err(),
            store.list().await.err(),
            store.quarantine(&sha).await.err(),
        ];
        for err in failures {
            let Some(BlobError::Unavailable(message)) = err else {
                panic!("{err:?} while the breaker is open");
            };
            assert!(message.starts_with(&fail_fast), "{message}");
            assert!(message.ends_with(tried.rsplit_once(": ").unwrap().1), "{message}");
        }
        // health() tries even while open (it is how /health sees the bucket come back).
        let Err(BlobError::Unavailable(probed)) = store.health().await else {
            panic!("the health probe of an unreachable bucket passed");
        };
        assert!(probed.starts_with("writing the health probe "), "{probed}");

        // Once RETRY_AFTER has passed, the next call tries the bucket again.
        let long_ago = Instant::now().checked_sub(RETRY_AFTER).unwrap();
        store.inner.breaker.0.lock().unwrap().as_mut().unwrap().0 = long_ago;
        let Err(BlobError::Unavailable(retried)) = store.get(&sha, None).await else {
            panic!("no connection is not Unavailable");
        };
        assert!(retried.starts_with(&format!("reading {key} in ")), "{retried}");
        // And that failure opened it again.
        let err = store.head(&sha).await.unwrap_err().to_string();
        assert!(err.starts_with(&fail_fast), "{err}");
    }
}
