//! Single-flight: however many requests want the same key at once, one task does the work and
//! all of them get its result.
//!
//! The work runs as its own task on the background runtime, so a client that disconnects (which
//! drops its request future) never cancels the fetch the other clients are waiting for.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::runtime::Handle;

/// The work's task panicked or was cancelled; its waiters get this instead of a value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("an internal task failed: {0}")]
pub struct FlightFailed(String);

type Flight<V> = Shared<BoxFuture<'static, Result<V, FlightFailed>>>;

/// Cheap to clone: clones share the flights.
pub struct SingleFlight<K, V> {
    flights: Arc<Mutex<HashMap<K, Flight<V>>>>,
    runtime: Handle,
}

impl<K, V> Clone for SingleFlight<K, V> {
    fn clone(&self) -> Self {
        Self {
            flights: Arc::clone(&self.flights),
            runtime: self.runtime.clone(),
        }
    }
}

impl<K, V> SingleFlight<K, V>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub fn new(runtime: Handle) -> Self {
        Self {
            flights: Arc::new(Mutex::new(HashMap::new())),
            runtime,
        }
    }

    /// Runs `work` for `key` unless a run for `key` is already under way, and returns that run's
    /// result. `work` is only called when this call starts the run.
    pub async fn run<F, Fut>(&self, key: K, work: F) -> Result<V, FlightFailed>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(flight) = flights.get(&key) {
                crate::metrics::METRICS.joined(crate::metrics::Flight::Page);
                flight.clone()
            } else {
                let fut = work();
                let registry = Arc::clone(&self.flights);
                let task_key = key.clone();
                let handle = self.runtime.spawn(async move {
                    let value = fut.await;
                    // Leave the registry before waiters see the value: a caller arriving after
                    // this starts a new run, which finds the fresh state the work just stored.
                    registry
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&task_key);
                    value
                });
                let registry = Arc::clone(&self.flights);
                let failed_key = key.clone();
                let flight: Flight<V> = async move {
                    handle.await.map_err(|join_error| {
                        // The task died before removing its key: do it here so the key is retried.
                        registry
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&failed_key);
                        FlightFailed(join_error.to_string())
                    })
                }
                .boxed()
                .shared();
                flights.insert(key, flight.clone());
                flight
            }
        };
        flight.await
    }

    /// Runs `task` on the runtime the flights run on.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.runtime.spawn(task);
    }

    /// How many runs are under way (for tests and stats).
    pub fn in_flight(&self) -> usize {
        self.flights.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_run() {
        let flights = Arc::new(SingleFlight::<&'static str, usize>::new(Handle::current()));
        let runs = Arc::new(AtomicUsize::new(0));
        let mut callers = Vec::new();
        for _ in 0..20 {
            let flights = Arc::clone(&flights);
            let runs = Arc::clone(&runs);
            callers.push(tokio::spawn(async move {
                flights
                    .run("k", || async move {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        runs.fetch_add(1, Ordering::SeqCst) + 41
                    })
                    .await
            }));
        }
        for caller in callers {
            assert_eq!(caller.await.unwrap().unwrap(), 41);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_caller_does_not_cancel_the_run() {
        let flights = Arc::new(SingleFlight::<u8, ()>::new(Handle::current()));
        let done = Arc::new(AtomicUsize::new(0));
        let d = Arc::clone(&done);
        let first = flights.run(1, || async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            d.fetch_add(1, Ordering::SeqCst);
        });
        // Poll once so the run starts, then drop the only caller.
        let _ = tokio::time::timeout(Duration::from_millis(5), first).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(done.load(Ordering::SeqCst), 1);
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_run_is_reported_and_retried() {
        let flights = SingleFlight::<u8, u8>::new(Handle::current());
        let err = flights.run(1, || async { panic!("boom") }).await;
        assert!(err.is_err());
        assert_eq!(flights.run(1, || async { 7 }).await.unwrap(), 7);
    }
}
