//! Warm runs started from `/admin`: the server warms itself through its own listener, exactly as
//! `pkgmirror warm` would from outside, one run at a time; the latest is kept for the page.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use url::Url;

use super::lockfile::LockFile;
use super::{Filters, Progress, Report, Warmer};

/// Fetches under way at once in a run from `/admin`: a fraction of what clients may use.
const JOBS: usize = 4;

#[derive(Default)]
pub struct Runs {
    /// Where the server listens, as it reaches itself; set once bound.
    own_url: OnceLock<Url>,
    latest: Mutex<Option<Arc<Run>>>,
}

/// One run: what it warms from, who started it, how far it is, and its report once done.
pub struct Run {
    pub file: String,
    pub actor: String,
    pub started_at: u64,
    pub progress: Arc<Progress>,
    report: Mutex<Option<Report>>,
}

impl Run {
    pub fn report(&self) -> Option<Report> {
        lock(&self.report).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding it leaves a value that is still whole: keep using it.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Runs {
    /// Records the bound address (`0.0.0.0` is reached as `127.0.0.1`).
    pub fn set_own_address(&self, addr: SocketAddr, https: bool) {
        let addr = super::reachable(addr);
        let scheme = if https { "https" } else { "http" };
        if let Ok(url) = Url::parse(&format!("{scheme}://{addr}/")) {
            let _ = self.own_url.set(url);
        }
    }

    pub fn latest(&self) -> Option<Arc<Run>> {
        lock(&self.latest).clone()
    }

    /// Starts warming from `locks` in the background; `token` is sent when reads need one, and
    /// `finished` gets the report before the run shows as done. Refuses while another run is
    /// under way.
    pub fn start<F>(
        &self,
        file: String,
        actor: String,
        locks: Vec<LockFile>,
        token: Option<String>,
        finished: impl FnOnce(Report) -> F + 'static,
    ) -> Result<Arc<Run>, String>
    where
        F: Future<Output = ()> + 'static,
    {
        let mut latest = lock(&self.latest);
        if let Some(run) = latest.as_ref()
            && run.report().is_none()
        {
            return Err(format!("a run from {} is under way", run.file));
        }
        let mut url = self
            .own_url
            .get()
            .cloned()
            .ok_or_else(|| "the server is not listening yet".to_owned())?;
        if let Some(token) = &token {
            let _ = url.set_username("token");
            let _ = url.set_password(Some(token));
        }
        let progress = Arc::new(Progress::default());
        // The server's own certificate is for its public name, not 127.0.0.1: the run reaches
        // its own listener, so the name is not checked.
        let warmer = Warmer::new(&url, JOBS, Filters::default(), progress.clone())
            .and_then(|w| w.for_own_listener())
            .map_err(|e| e.to_string())?;
        let run = Arc::new(Run {
            file,
            actor,
            started_at: crate::cache::unix_now(),
            progress,
            report: Mutex::new(None),
        });
        *latest = Some(run.clone());
        let running = run.clone();
        // On the worker that took the upload (its local set): the run's stream combinators
        // borrow across awaits in a way the compiler cannot prove `Send`.
        actix_web::rt::spawn(async move {
            let report = warmer.run(&locks).await;
            // Before the run shows as done: what `finished` records is there when it does.
            finished(report.clone()).await;
            *lock(&running.report) = Some(report);
        });
        Ok(run)
    }
}
