//! Per-index health: the last success and failure, shown on `/health`, and a short back-off after
//! a failure during which stale copies are served without asking the upstream again.

use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use serde::Serialize;

use super::FAILURE_BACKOFF;

#[derive(Debug, Default)]
struct State {
    last_success: Option<SystemTime>,
    last_failure: Option<(SystemTime, Instant, String)>,
}

#[derive(Debug, Default)]
pub struct IndexHealth {
    state: Mutex<State>,
}

/// The health of one index as `/health` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct IndexHealthReport {
    /// `up` (last contact succeeded), `down` (last contact failed) or `unknown` (never contacted).
    pub state: &'static str,
    pub last_success: Option<String>,
    pub last_failure: Option<String>,
    pub last_error: Option<String>,
}

impl IndexHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record_success(&self) {
        self.lock().last_success = Some(SystemTime::now());
    }

    pub fn record_failure(&self, error: &str) {
        self.lock().last_failure = Some((SystemTime::now(), Instant::now(), error.to_owned()));
    }

    /// True while the index failed more recently than it succeeded and the back-off has not run out.
    pub fn backing_off(&self) -> bool {
        let state = self.lock();
        match (&state.last_failure, state.last_success) {
            (Some((failed, at, _)), success) => {
                success.is_none_or(|s| s < *failed) && at.elapsed() < FAILURE_BACKOFF
            }
            (None, _) => false,
        }
    }

    pub fn report(&self) -> IndexHealthReport {
        let state = self.lock();
        let failed_at = state.last_failure.as_ref().map(|(t, _, _)| *t);
        let up = match (state.last_success, failed_at) {
            (None, None) => "unknown",
            (Some(_), None) => "up",
            (None, Some(_)) => "down",
            (Some(s), Some(f)) => {
                if s >= f {
                    "up"
                } else {
                    "down"
                }
            }
        };
        IndexHealthReport {
            state: up,
            last_success: state.last_success.map(rfc3339),
            last_failure: failed_at.map(rfc3339),
            last_error: state.last_failure.as_ref().map(|(_, _, e)| e.clone()),
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_the_latest_event() {
        let health = IndexHealth::default();
        assert_eq!(health.report().state, "unknown");
        assert!(!health.backing_off());
        health.record_failure("refused");
        assert_eq!(health.report().state, "down");
        assert_eq!(health.report().last_error.as_deref(), Some("refused"));
        assert!(health.backing_off());
        std::thread::sleep(std::time::Duration::from_millis(5));
        health.record_success();
        assert_eq!(health.report().state, "up");
        assert!(!health.backing_off());
    }
}
