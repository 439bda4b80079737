//! Per-index health: the last success and failure, shown on `/health`, and a short back-off after
//! a failure during which stale copies are served without asking the upstream again.
//!
//! A failure is either the index not answering (`down`) or answering with pages pkgmirror cannot
//! read (`unreadable`): the two call for different fixes, so they are told apart. An index whose
//! JSON pages could not be read is remembered for a while, so its pages are asked for in HTML.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::FAILURE_BACKOFF;
use crate::breaker::Breaker;

/// How long an index's JSON is not asked for again after one of its JSON pages could not be read
/// (its HTML is asked for instead). Long enough not to pay a failed parse per page, short enough
/// that a fixed upstream gets its JSON used again soon.
pub const JSON_RETRY_AFTER: Duration = Duration::from_secs(10 * 60);

/// What the last contact with an index said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexState {
    /// Never contacted.
    Unknown,
    /// The last contact succeeded.
    Up,
    /// The last contact failed: no answer, a timeout, an error status, a cut body.
    Down,
    /// The index answered, but with a page pkgmirror cannot read.
    Unreadable,
}

impl IndexState {
    pub const ALL: [Self; 4] = [Self::Unknown, Self::Up, Self::Down, Self::Unreadable];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Up => "up",
            Self::Down => "down",
            Self::Unreadable => "unreadable",
        }
    }

    /// Whether this state makes the whole server degraded.
    pub fn is_failing(self) -> bool {
        matches!(self, Self::Down | Self::Unreadable)
    }
}

/// Why a contact failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No usable answer came back.
    Unreachable,
    /// An answer came back that could not be read.
    Unreadable,
}

#[derive(Debug)]
struct Failure {
    at: SystemTime,
    kind: FailureKind,
    error: String,
}

#[derive(Debug, Default)]
struct State {
    last_success: Option<SystemTime>,
    last_failure: Option<Failure>,
    /// Until when, and why, the index's JSON pages are not asked for.
    json_unusable: Option<(Instant, String)>,
    dropped_entries: u64,
    last_dropped: Option<String>,
}

#[derive(Debug)]
pub struct IndexHealth {
    state: Mutex<State>,
    /// Open for [`FAILURE_BACKOFF`] after a failure.
    breaker: Breaker,
}

impl Default for IndexHealth {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            breaker: Breaker::new(FAILURE_BACKOFF),
        }
    }
}

/// The health of one index as `/health` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct IndexHealthReport {
    pub state: IndexState,
    /// Whether the index is left alone for now after a failure (stale copies are served).
    pub backing_off: bool,
    pub last_success: Option<String>,
    pub last_failure: Option<String>,
    pub last_error: Option<String>,
    /// Why JSON is not asked for right now (HTML is), while that lasts.
    pub json_unusable: Option<String>,
    /// Malformed entries left out of this index's pages since the start, and the latest one.
    pub dropped_entries: u64,
    pub last_dropped: Option<String>,
}

impl IndexHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record_success(&self) {
        self.lock().last_success = Some(SystemTime::now());
        self.breaker.close();
    }

    pub fn record_failure(&self, kind: FailureKind, error: &str) {
        self.lock().last_failure = Some(Failure {
            at: SystemTime::now(),
            kind,
            error: error.to_owned(),
        });
        self.breaker.open(error.to_owned());
    }

    /// Counts entries left out of one page; `first` names the first of them.
    pub fn record_dropped(&self, count: usize, first: String) {
        let mut state = self.lock();
        state.dropped_entries += count as u64;
        state.last_dropped = Some(first);
    }

    /// Remembers that this index's JSON could not be read, for [`JSON_RETRY_AFTER`].
    pub fn mark_json_unusable(&self, why: &str) {
        self.lock().json_unusable = Some((Instant::now() + JSON_RETRY_AFTER, why.to_owned()));
    }

    /// True while the index's JSON is remembered as unusable.
    pub fn json_unusable(&self) -> bool {
        self.lock()
            .json_unusable
            .as_ref()
            .is_some_and(|(until, _)| Instant::now() < *until)
    }

    /// Whether the last contact failed (whatever the back-off says).
    pub fn failing(&self) -> bool {
        let state = self.lock();
        match (&state.last_failure, state.last_success) {
            (Some(failure), Some(success)) => failure.at > success,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// True while the index failed more recently than it succeeded and the back-off has not run out.
    pub fn backing_off(&self) -> bool {
        self.breaker.is_open()
    }

    pub fn report(&self) -> IndexHealthReport {
        let state = self.lock();
        let failure = state.last_failure.as_ref();
        let state_now = match (state.last_success, failure) {
            (None, None) => IndexState::Unknown,
            (Some(_), None) => IndexState::Up,
            (Some(success), Some(failure)) if success >= failure.at => IndexState::Up,
            (_, Some(failure)) => match failure.kind {
                FailureKind::Unreachable => IndexState::Down,
                FailureKind::Unreadable => IndexState::Unreadable,
            },
        };
        IndexHealthReport {
            state: state_now,
            backing_off: self.breaker.is_open(),
            last_success: state.last_success.map(rfc3339),
            last_failure: failure.map(|f| rfc3339(f.at)),
            last_error: failure.map(|f| f.error.clone()),
            json_unusable: state
                .json_unusable
                .as_ref()
                .filter(|(until, _)| Instant::now() < *until)
                .map(|(_, why)| why.clone()),
            dropped_entries: state.dropped_entries,
            last_dropped: state.last_dropped.clone(),
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
        assert_eq!(health.report().state, IndexState::Unknown);
        assert!(!health.backing_off());
        health.record_failure(FailureKind::Unreachable, "refused");
        assert_eq!(health.report().state, IndexState::Down);
        assert_eq!(health.report().last_error.as_deref(), Some("refused"));
        assert!(health.backing_off());
        std::thread::sleep(std::time::Duration::from_millis(5));
        health.record_success();
        assert_eq!(health.report().state, IndexState::Up);
        assert!(!health.backing_off());
        std::thread::sleep(std::time::Duration::from_millis(5));
        health.record_failure(FailureKind::Unreadable, "bad JSON");
        let report = health.report();
        assert_eq!(report.state, IndexState::Unreadable);
        assert!(report.state.is_failing());
        assert_eq!(serde_json::to_value(report.state).unwrap(), "unreadable");
    }

    #[test]
    fn json_unusable_and_dropped_entries_are_reported() {
        let health = IndexHealth::default();
        assert!(!health.json_unusable());
        health.mark_json_unusable("`files` is not an array");
        assert!(health.json_unusable());
        health.record_dropped(2, "page six: files[3]: no string `url`".into());
        health.record_dropped(1, "page seven: link 1: unsafe filename \"..\"".into());
        let report = health.report();
        assert_eq!(report.json_unusable.as_deref(), Some("`files` is not an array"));
        assert_eq!(report.dropped_entries, 3);
        assert_eq!(
            report.last_dropped.as_deref(),
            Some("page seven: link 1: unsafe filename \"..\"")
        );
    }
}
