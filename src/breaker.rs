//! A circuit breaker: after a failure, a dependency (an upstream index, the hex repository, an S3
//! bucket) is left alone for a while, so requests fail over at once (to a stale copy, to serving
//! without storing) instead of each waiting for its timeout; the first call after that tries it
//! again, and a success closes the breaker, so recovery needs nobody.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Breaker {
    retry_after: Duration,
    /// When it last failed, and why; `None` while it works.
    open: Mutex<Option<(Instant, String)>>,
}

impl Breaker {
    pub fn new(retry_after: Duration) -> Self {
        Self {
            retry_after,
            open: Mutex::new(None),
        }
    }

    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, String)>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// It failed: open, or keep open, from now. Returns whether it was closed before.
    pub fn open(&self, why: String) -> bool {
        self.lock().replace((Instant::now(), why)).is_none()
    }

    /// It worked. Returns whether the breaker was open before.
    pub fn close(&self) -> bool {
        self.lock().take().is_some()
    }

    /// Why it is not to be tried right now, while it failed less than `retry_after` ago.
    pub fn open_because(&self) -> Option<String> {
        match &*self.lock() {
            Some((since, why)) if since.elapsed() < self.retry_after => Some(why.clone()),
            _ => None,
        }
    }

    pub fn is_open(&self) -> bool {
        self.open_because().is_some()
    }

    /// Moves the last failure `by` into the past, as if that much time had gone by.
    #[cfg(test)]
    pub(crate) fn backdate(&self, by: Duration) {
        if let Some((since, _)) = self.lock().as_mut() {
            *since = since.checked_sub(by).unwrap_or(*since);
        }
    }

    /// Whether it failed since it last worked, however long ago.
    #[cfg(test)]
    pub(crate) fn failed_since_success(&self) -> bool {
        self.lock().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_on_failure_closes_on_success_and_lets_a_try_through_after_the_wait() {
        let breaker = Breaker::new(Duration::from_millis(50));
        assert!(!breaker.is_open());
        assert!(breaker.open("refused".into()), "it was closed");
        assert!(!breaker.open("refused again".into()), "already open");
        assert_eq!(breaker.open_because().as_deref(), Some("refused again"));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!breaker.is_open(), "a try goes through after the wait");
        assert!(breaker.close(), "it was open");
        assert!(!breaker.close());
        assert!(!breaker.is_open());
    }
}
