//! Upstream pools: one index (or the hex repository) served by several equivalent URLs. A
//! request goes to the healthy member with the lowest recent latency; a member that fails (no
//! answer, a timeout, a 5xx or 429, a cut body) is taken out for a while and the request is
//! retried on the next member; a member left out is probed now and then and put back when it
//! answers.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{FailureKind, IndexHealth, IndexHealthReport, UpstreamError};
use crate::config::UpstreamUrl;
use crate::live::Live;

/// How much of a new latency sample the member's average takes.
const LATENCY_WEIGHT: f64 = 0.3;

/// One URL of a pool, with what it showed lately.
#[derive(Debug)]
pub struct Member {
    pub url: UpstreamUrl,
    pub health: IndexHealth,
    /// Seconds to a response head, averaged over recent requests; `None` until it answered.
    latency: Mutex<Option<f64>>,
}

impl Member {
    fn new(url: UpstreamUrl) -> Arc<Self> {
        Arc::new(Self {
            url,
            health: IndexHealth::default(),
            latency: Mutex::new(None),
        })
    }

    fn latency(&self) -> Option<f64> {
        *self.latency.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn answered(&self, took: Duration) {
        let mut latency = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        let sample = took.as_secs_f64();
        *latency = Some(match *latency {
            Some(average) => average + LATENCY_WEIGHT * (sample - average),
            None => sample,
        });
        drop(latency);
        self.health.record_success();
    }

    fn failed(&self, error: &UpstreamError) {
        self.health
            .record_failure(FailureKind::Unreachable, &error.to_string());
    }
}

/// A member as `/health`, the home page and `/metrics` show it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberReport {
    /// Redacted URL.
    pub url: String,
    #[serde(flatten)]
    pub health: IndexHealthReport,
    /// Recent average time to a response head, in milliseconds.
    pub latency_ms: Option<f64>,
}

/// The members of one index, replaced whole by a reload (members kept across it keep their
/// health and latency).
#[derive(Debug)]
pub struct UpstreamPool {
    members: Live<Vec<Arc<Member>>>,
}

/// Whether `error` says this member is unwell, so another member may do better: no answer, a
/// timeout, a server error or a refusal to serve now, a cut body. A 404 or a refused URL says
/// the same on every member.
fn is_member_fault(error: &UpstreamError) -> bool {
    match error {
        UpstreamError::Timeout { .. } | UpstreamError::Connect { .. } | UpstreamError::Body { .. } => true,
        UpstreamError::Status { status, .. } => *status >= 500 || *status == 429,
        UpstreamError::Refused { .. } => false,
    }
}

impl UpstreamPool {
    pub fn new(urls: &[UpstreamUrl]) -> Self {
        Self {
            members: Live::new(urls.iter().cloned().map(Member::new).collect()),
        }
    }

    /// Puts `urls` in place of the members; a URL that was a member already keeps its state.
    pub fn replace(&self, urls: &[UpstreamUrl]) {
        let old = self.members.current();
        let members = urls
            .iter()
            .map(|url| {
                old.iter()
                    .find(|member| member.url.cache_key() == url.cache_key())
                    .map_or_else(|| Member::new(url.clone()), Arc::clone)
            })
            .collect();
        self.members.replace(members);
    }

    /// The members in the order to try them: those whose last contact succeeded (or that were
    /// not contacted yet), quickest first (one not yet heard from counts as quickest, so every
    /// member gets measured); then those left out after a failure, which a probe puts back.
    fn in_order(&self) -> Vec<Arc<Member>> {
        let members = self.members.current();
        let mut order: Vec<Arc<Member>> = members.iter().cloned().collect();
        // A stable sort keeps the configured order among equals.
        order.sort_by(|a, b| {
            let key = |m: &Member| (m.health.failing(), m.latency().unwrap_or(0.0));
            let (a, b) = (key(a), key(b));
            a.0.cmp(&b.0).then(a.1.total_cmp(&b.1))
        });
        order
    }

    /// The member to build URLs on now (a hex tarball's).
    pub fn best(&self) -> UpstreamUrl {
        let order = self.in_order();
        // A pool is never empty: the configuration refuses an index without a URL.
        order
            .first()
            .map_or_else(|| self.members.current()[0].url.clone(), |m| m.url.clone())
    }

    /// Runs `request` on the best member; when that member fails as only it may, on the next,
    /// and so on. The last failure is the answer when every member failed.
    pub async fn run<T, F, Fut>(&self, request: F) -> Result<T, UpstreamError>
    where
        F: Fn(UpstreamUrl) -> Fut,
        Fut: Future<Output = Result<T, UpstreamError>>,
    {
        let members = self.in_order();
        // Members left out after a failure are asked only when every member is.
        let any_healthy = members.iter().any(|m| !m.health.failing());
        let mut last = None;
        for member in &members {
            if any_healthy && member.health.failing() {
                continue;
            }
            let started = Instant::now();
            match request(member.url.clone()).await {
                Ok(value) => {
                    member.answered(started.elapsed());
                    return Ok(value);
                }
                Err(error) if is_member_fault(&error) => {
                    member.failed(&error);
                    if members.len() > 1 {
                        tracing::warn!(member = %member.url.redacted(), error = %error, "upstream member failed; trying the next");
                    }
                    last = Some(error);
                }
                Err(error) => {
                    member.answered(started.elapsed());
                    return Err(error);
                }
            }
        }
        Err(last.unwrap_or_else(|| UpstreamError::Connect {
            index: "the upstream pool".to_owned(),
            detail: "it has no member".to_owned(),
        }))
    }

    /// Members left out after a failure, to probe.
    pub fn left_out(&self) -> Vec<Arc<Member>> {
        self.members
            .current()
            .iter()
            .filter(|m| m.health.failing())
            .cloned()
            .collect()
    }

    /// A probe's outcome for `member`: any answer but a member fault puts it back.
    pub fn probed(&self, member: &Member, outcome: Result<Duration, UpstreamError>) {
        match outcome {
            Err(error) if is_member_fault(&error) => member.failed(&error),
            Err(_) => member.health.record_success(),
            Ok(took) => member.answered(took),
        }
    }

    pub fn reports(&self) -> Vec<MemberReport> {
        self.members
            .current()
            .iter()
            .map(|m| MemberReport {
                url: m.url.redacted(),
                health: m.health.report(),
                latency_ms: m.latency().map(|s| (s * 1000.0 * 10.0).round() / 10.0),
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.members.current().len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.current().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn url(text: &str) -> UpstreamUrl {
        serde_json::from_value(serde_json::Value::String(text.to_owned())).unwrap()
    }

    fn down(index: &str) -> UpstreamError {
        UpstreamError::Connect {
            index: index.to_owned(),
            detail: "refused".to_owned(),
        }
    }

    #[tokio::test]
    async fn a_failing_member_is_skipped_and_the_next_answers() {
        let pool = UpstreamPool::new(&[url("http://a.example/simple/"), url("http://b.example/simple/")]);
        let asked = AtomicUsize::new(0);
        let answer = pool
            .run(|member| {
                asked.fetch_add(1, Ordering::SeqCst);
                async move {
                    if member.url().host_str() == Some("a.example") {
                        Err(down("a"))
                    } else {
                        Ok("from b")
                    }
                }
            })
            .await;
        assert_eq!(answer.unwrap(), "from b");
        assert_eq!(asked.load(Ordering::SeqCst), 2);
        // a is left out now: b is asked first, alone.
        asked.store(0, Ordering::SeqCst);
        let answer = pool
            .run(|member| {
                asked.fetch_add(1, Ordering::SeqCst);
                async move { Ok(member.url().host_str().unwrap().to_owned()) }
            })
            .await;
        assert_eq!(answer.unwrap(), "b.example");
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        let reports = pool.reports();
        assert_eq!(reports[0].health.state.as_str(), "down");
        assert_eq!(reports[1].health.state.as_str(), "up");
        assert_eq!(pool.left_out().len(), 1);
        pool.probed(&pool.left_out()[0], Ok(Duration::from_millis(5)));
        assert!(
            pool.left_out().is_empty(),
            "a probe that got an answer puts it back"
        );
    }

    #[tokio::test]
    async fn a_404_is_the_answer_not_a_fault_and_every_member_failing_is_an_error() {
        let pool = UpstreamPool::new(&[url("http://a.example/"), url("http://b.example/")]);
        let not_found = pool
            .run(|_| async {
                Err::<(), _>(UpstreamError::Status {
                    index: "a".into(),
                    status: 404,
                    path: "x".into(),
                })
            })
            .await;
        assert!(matches!(
            not_found,
            Err(UpstreamError::Status { status: 404, .. })
        ));
        assert!(pool.left_out().is_empty());
        let all_down = pool.run(|_| async { Err::<(), _>(down("any")) }).await;
        assert!(matches!(all_down, Err(UpstreamError::Connect { .. })));
        assert_eq!(pool.left_out().len(), 2);
    }

    #[test]
    fn the_quickest_healthy_member_goes_first_and_replace_keeps_state() {
        let pool = UpstreamPool::new(&[url("http://slow.example/"), url("http://fast.example/")]);
        let members = pool.members.current();
        members[0].answered(Duration::from_millis(200));
        members[1].answered(Duration::from_millis(20));
        assert_eq!(pool.best().url().host_str(), Some("fast.example"));
        members[1].failed(&down("fast"));
        assert_eq!(
            pool.best().url().host_str(),
            Some("slow.example"),
            "a failed member goes last"
        );
        pool.replace(&[url("http://fast.example/"), url("http://new.example/")]);
        let reports = pool.reports();
        assert_eq!(reports[0].health.state.as_str(), "down", "fast keeps its state");
        assert_eq!(reports[1].health.state.as_str(), "unknown");
        assert_eq!(pool.len(), 2);
    }
}
