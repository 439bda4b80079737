//! The freshness-checked page cache both ecosystems share: memory (L1) → page store (disk) →
//! one refresh per page however many requests wait → the stored copy when the upstream fails.
//!
//! What a page *is* and how it is refreshed belongs to a [`PageSource`]: PyPI merges and renders
//! its indexes' snapshots, hex keeps registry files as sent and blob pointers for other files.
//! This module owns everything around that: which stored copy is fresh, sharing one refresh,
//! falling back to the stored copy, and writing what a refresh produced (catalogue record first,
//! then snapshots and forms in one page-store transaction) before holding it in memory.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use tokio::runtime::Handle;
use tokio::sync::OwnedMutexGuard;

use super::page_writer::{PageJob, PageWriter};
use super::singleflight::SingleFlight;
use super::{CacheCounters, CacheError, CacheOutcome, blocking, unix_now};
use crate::ecosystem::Ecosystem;
use crate::storage::PageStore;
use crate::storage::catalogue::ProjectRecord;
use crate::storage::pages::{PageForm, PageHeader, PageKey, StoredPage};

/// After storing a refresh whose forms are bigger than this, freed memory is handed back.
const RETURN_MEMORY_AFTER: usize = 8 << 20;

/// A page ready to send, and where it came from.
#[derive(Debug, Clone)]
pub struct Served {
    pub page: Arc<StoredPage>,
    pub outcome: CacheOutcome,
}

/// How hard a refresh asks the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// Only what is past its TTL (a stored copy refreshed meanwhile by another flight is used).
    IfStale,
    /// Everything, TTL or not, conditionally (with the stored ETags).
    Revalidate,
    /// Everything, unconditionally: what is stored cannot be used (a pointed-to blob is gone).
    Refetch,
}

/// Whether the upstreams behind a source can be asked now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstreams {
    /// None is configured: whatever is stored is the answer.
    None,
    /// Every one failed moments ago: a stored copy is served stale without asking again.
    BackingOff,
    Available,
}

/// What a refresh produced.
pub enum Refreshed {
    /// Every form of the page, and what to store with them.
    Page {
        forms: Vec<(PageForm, Arc<StoredPage>)>,
        outcome: CacheOutcome,
        keep: Keep,
    },
    /// The upstream says the page does not exist: what is stored of it goes, and this is the
    /// answer.
    Gone(CacheError),
}

/// What a refresh asks to be written.
#[derive(Default)]
pub struct Keep {
    /// New per-index snapshots: (index key, encoded snapshot).
    pub snapshots: Vec<(String, Vec<u8>)>,
    /// A project to record in the catalogue, written before the page store.
    pub record: Option<ProjectRecord>,
    /// Whether the forms replace the stored ones (a partial, stale rendering does not).
    pub forms: bool,
    /// A lock the refresh holds until what it produced is stored (see `cache::simple`'s big
    /// pages): released once the write is done.
    pub hold: Option<OwnedMutexGuard<()>>,
}

impl Keep {
    /// The forms, nothing else.
    pub fn forms() -> Self {
        Self {
            forms: true,
            ..Self::default()
        }
    }
}

/// How a page cache holds and refreshes pages.
#[derive(Debug, Clone, Copy)]
pub struct PageCacheSettings {
    /// Bytes of pages held in memory (`storage.page_cache_size`).
    pub l1_bytes: u64,
    /// How long a request with an expired stored copy waits for the refresh before it is
    /// answered with that copy, stale, while the refresh goes on (`pypi.refresh_wait`).
    pub refresh_wait: Duration,
    /// The last share of a page's lifetime in which a request has it revalidated in the
    /// background, so the next requests find it fresh (`pypi.refresh_ahead`; 0: never).
    pub refresh_ahead: f64,
}

/// Background revalidations (`refresh_ahead`) under way at once, at most: past it, a page due is
/// left to the request path.
const REFRESHES_AHEAD_AT_ONCE: usize = 4;

/// An ecosystem's pages: how they are named and refreshed.
pub trait PageSource: Send + Sync + 'static {
    /// A page, as requests name it; refreshes are shared per key.
    type Key: Clone + Eq + Hash + Send + Sync + 'static;
    const ECOSYSTEM: Ecosystem;

    /// Every form a refresh produces for the page.
    fn forms(key: &Self::Key) -> &'static [PageForm];

    /// The key's name in the page store.
    fn store_key(key: &Self::Key) -> String;

    fn upstreams(&self) -> Upstreams;

    /// Asks the upstream(s) for the page. `stored` is the form the first waiting request asked
    /// for, as stored (its upstream ETag, for a conditional request); `None` with
    /// [`Refresh::Refetch`].
    fn refresh(
        self: Arc<Self>,
        key: Self::Key,
        stored: Option<Arc<StoredPage>>,
        mode: Refresh,
    ) -> impl Future<Output = Result<Refreshed, CacheError>> + Send;
}

/// The shared cache in front of one [`PageSource`].
pub struct PageCache<S: PageSource> {
    shared: Arc<Shared<S>>,
    refresh_wait: Duration,
    refresh_ahead: f64,
    /// Turns for background revalidations.
    ahead: Arc<tokio::sync::Semaphore>,
    flights: SingleFlight<S::Key, Result<RefreshedForms, CacheError>>,
}

/// Every form one refresh produced, and where they came from.
#[derive(Clone)]
struct RefreshedForms {
    forms: Vec<(PageForm, Arc<StoredPage>)>,
    outcome: CacheOutcome,
}

struct Shared<S: PageSource> {
    source: Arc<S>,
    /// Identifies the upstreams (and TTLs) pages are fetched under; a stored page from another
    /// configuration is not fresh.
    sources: String,
    store: PageStore,
    writer: PageWriter,
    l1: Cache<(S::Key, PageForm), Arc<StoredPage>>,
    counters: Arc<CacheCounters>,
}

impl<S: PageSource> PageCache<S> {
    pub fn new(
        source: Arc<S>,
        sources: String,
        store: PageStore,
        catalogue: crate::storage::Catalogue,
        settings: PageCacheSettings,
        counters: Arc<CacheCounters>,
        runtime: Handle,
    ) -> Self {
        let l1 = Cache::builder()
            .max_capacity(settings.l1_bytes)
            .weigher(|_, page: &Arc<StoredPage>| u32::try_from(page.weight()).unwrap_or(u32::MAX))
            .build();
        Self {
            shared: Arc::new(Shared {
                source,
                sources,
                writer: PageWriter::start(store.clone(), catalogue, &runtime),
                store,
                l1,
                counters,
            }),
            refresh_wait: settings.refresh_wait,
            refresh_ahead: settings.refresh_ahead,
            ahead: Arc::new(tokio::sync::Semaphore::new(REFRESHES_AHEAD_AT_ONCE)),
            flights: SingleFlight::new(runtime),
        }
    }

    pub fn source(&self) -> &S {
        &self.shared.source
    }

    /// Answers a page: from memory or disk while fresh, else refreshed (one refresh per page
    /// however many requests wait), else the stored copy marked stale, else an error. A refresh
    /// of a stored page that takes longer than `refresh_wait` is not waited for: the stored copy
    /// answers, stale, and the refresh finishes in the background.
    pub async fn get(&self, key: S::Key, form: PageForm) -> Result<Served, CacheError> {
        let shared = &self.shared;
        let stored = shared.stored(&key, form).await?;
        if let Some(stored) = &stored {
            let upstreams = shared.source.upstreams();
            let outcome = if upstreams == Upstreams::None || shared.is_fresh(&stored.header) {
                Some(CacheOutcome::Hit)
            } else if upstreams == Upstreams::BackingOff {
                // Every upstream failed moments ago: don't make this client wait for them again.
                Some(CacheOutcome::Stale)
            } else {
                None
            };
            if let Some(outcome) = outcome {
                shared.counters.count(outcome);
                if outcome == CacheOutcome::Hit && upstreams == Upstreams::Available {
                    self.refresh_ahead_if_due(&key, stored);
                }
                return Ok(Served {
                    page: Arc::clone(stored),
                    outcome,
                });
            }
        }
        let Some(stored) = stored else {
            return self.refresh_from(key, form, None, Refresh::IfStale).await;
        };
        let refresh = self.refresh_from(key, form, Some(Arc::clone(&stored)), Refresh::IfStale);
        match tokio::time::timeout(self.refresh_wait, refresh).await {
            Ok(answer) => answer,
            // Dropping the wait does not stop the refresh: it runs as a task of its own.
            Err(_) => {
                shared.counters.count(CacheOutcome::Stale);
                Ok(Served {
                    page: stored,
                    outcome: CacheOutcome::Stale,
                })
            }
        }
    }

    /// Revalidates a fresh page in the background when it is in the last `refresh_ahead` share
    /// of its lifetime, so that requests after its TTL find it fresh instead of waiting for the
    /// upstream. At most [`REFRESHES_AHEAD_AT_ONCE`] at a time; a page due while they are busy is
    /// left to the request path.
    fn refresh_ahead_if_due(&self, key: &S::Key, stored: &Arc<StoredPage>) {
        let header = &stored.header;
        let lifetime = header.expires_at.saturating_sub(header.fetched_at);
        let window = (lifetime as f64 * self.refresh_ahead) as u64;
        if window == 0 || header.expires_at.saturating_sub(unix_now()) > window {
            return;
        }
        let Ok(turn) = Arc::clone(&self.ahead).try_acquire_owned() else {
            return;
        };
        let (shared, flights) = (Arc::clone(&self.shared), self.flights.clone());
        let (key, stored) = (key.clone(), Arc::clone(stored));
        crate::metrics::METRICS.refreshed_ahead();
        // A task of its own on the background runtime: the request that noticed goes on at once.
        self.flights.spawn(async move {
            let flight_key = key.clone();
            let _ = flights
                .run(key, move || async move {
                    shared
                        .refresh(flight_key, Some(stored), Refresh::Revalidate)
                        .await
                })
                .await;
            drop(turn);
        });
    }

    /// Refreshes a page now, TTL or not; shares any refresh of the page under way.
    pub async fn refresh(&self, key: S::Key, form: PageForm, mode: Refresh) -> Result<Served, CacheError> {
        let stored = match mode {
            Refresh::Refetch => None,
            Refresh::IfStale | Refresh::Revalidate => self.shared.stored(&key, form).await?,
        };
        self.refresh_from(key, form, stored, mode).await
    }

    async fn refresh_from(
        &self,
        key: S::Key,
        form: PageForm,
        stored: Option<Arc<StoredPage>>,
        mode: Refresh,
    ) -> Result<Served, CacheError> {
        let shared = Arc::clone(&self.shared);
        let flight_key = key.clone();
        let flight_stored = stored.clone();
        let result = self
            .flights
            .run(key, move || async move {
                shared.refresh(flight_key, flight_stored, mode).await
            })
            .await?;
        let served = match result {
            Ok(refreshed) => refreshed
                .forms
                .iter()
                .find(|(f, _)| *f == form)
                .map(|(_, page)| Served {
                    page: Arc::clone(page),
                    outcome: refreshed.outcome,
                })
                .ok_or_else(|| {
                    CacheError::Internal(format!("a refresh produced no {} form", form.as_str()))
                })?,
            // The upstream failed: what is stored is still the best answer there is (unless the
            // refetch was asked because what is stored cannot be used).
            Err(CacheError::Upstream(error)) => match stored {
                Some(page) => {
                    tracing::warn!(ecosystem = S::ECOSYSTEM.as_str(), error = %error, "upstream failed; serving the stored copy");
                    Served {
                        page,
                        outcome: CacheOutcome::Stale,
                    }
                }
                None => return Err(CacheError::Upstream(error)),
            },
            Err(e) => return Err(e),
        };
        self.shared.counters.count(served.outcome);
        Ok(served)
    }

    /// Forgets pages' forms (memory and disk) and, unless `keep_snapshots`, what the upstreams
    /// said of them, in one store transaction. Returns whether anything was stored.
    pub async fn forget(&self, keys: &[S::Key], keep_snapshots: bool) -> Result<bool, CacheError> {
        self.shared.forget(keys, keep_snapshots).await
    }

    /// Forgets every page of the ecosystem (with `keep_snapshots`, only their renderings:
    /// they are rendered again, upstreams asked only as their TTLs say); returns how many were
    /// stored.
    pub async fn forget_all(&self, keep_snapshots: bool) -> Result<u64, CacheError> {
        self.shared.l1.invalidate_all();
        let store = self.shared.store.clone();
        blocking(move || store.forget_all(S::ECOSYSTEM, keep_snapshots)).await
    }

    /// The stored form of a page, if any, fresh or not.
    pub async fn stored(&self, key: &S::Key, form: PageForm) -> Result<Option<Arc<StoredPage>>, CacheError> {
        self.shared.stored(key, form).await
    }

    /// Pages held in memory right now.
    pub async fn l1_entries(&self) -> u64 {
        // moka counts lazily: settle pending bookkeeping so the figure is current.
        self.shared.l1.run_pending_tasks().await;
        self.shared.l1.entry_count()
    }
}

impl<S: PageSource> Shared<S> {
    fn is_fresh(&self, header: &PageHeader) -> bool {
        header.sources == self.sources && header.expires_at > unix_now()
    }

    /// A stored form from memory, else from disk (promoted to memory).
    async fn stored(&self, key: &S::Key, form: PageForm) -> Result<Option<Arc<StoredPage>>, CacheError> {
        let l1_key = (key.clone(), form);
        if let Some(hit) = self.l1.get(&l1_key).await {
            return Ok(Some(hit));
        }
        let store = self.store.clone();
        let name = S::store_key(key);
        let Some(page) = blocking(move || store.page(PageKey::new(S::ECOSYSTEM, &name, form))).await? else {
            return Ok(None);
        };
        let page = Arc::new(page);
        self.l1.insert(l1_key, Arc::clone(&page)).await;
        Ok(Some(page))
    }

    /// Runs the source's refresh of a page; `stored` is what the request that started it found
    /// (passed on, not read again: for a big page, a second copy of it would be held through the
    /// refresh).
    async fn refresh(
        self: Arc<Self>,
        key: S::Key,
        stored: Option<Arc<StoredPage>>,
        mode: Refresh,
    ) -> Result<RefreshedForms, CacheError> {
        if mode == Refresh::IfStale
            && let Some(fresh) = self.all_fresh(&key).await?
        {
            // Refreshed by the flight that ended just before this one started.
            return Ok(fresh);
        }
        match Arc::clone(&self.source)
            .refresh(key.clone(), stored, mode)
            .await?
        {
            Refreshed::Page { forms, outcome, keep } => {
                self.keep(&key, &forms, keep).await;
                if forms.iter().map(|(_, page)| page.weight()).sum::<usize>() > RETURN_MEMORY_AFTER {
                    // The parsed model, snapshots and renderings of a big page were just freed.
                    tokio::task::spawn_blocking(return_freed_memory);
                }
                for (form, page) in &forms {
                    self.l1.insert((key.clone(), *form), Arc::clone(page)).await;
                }
                Ok(RefreshedForms { forms, outcome })
            }
            Refreshed::Gone(error) => {
                self.forget(std::slice::from_ref(&key), false).await?;
                Err(error)
            }
        }
    }

    /// Every form of the page, if each is stored and fresh.
    async fn all_fresh(&self, key: &S::Key) -> Result<Option<RefreshedForms>, CacheError> {
        let mut forms = Vec::new();
        for form in S::forms(key) {
            match self.stored(key, *form).await? {
                Some(page) if self.is_fresh(&page.header) => forms.push((*form, page)),
                _ => return Ok(None),
            }
        }
        Ok(Some(RefreshedForms {
            forms,
            outcome: CacheOutcome::Hit,
        }))
    }

    /// Writes what a refresh produced. A failed write (a full disk, say) costs a refetch later,
    /// not this client's answer.
    async fn keep(&self, key: &S::Key, forms: &[(PageForm, Arc<StoredPage>)], keep: Keep) {
        if !keep.forms && keep.snapshots.is_empty() {
            return;
        }
        let job = PageJob {
            ecosystem: S::ECOSYSTEM,
            name: S::store_key(key),
            record: keep.record,
            snapshots: keep.snapshots,
            forms: forms
                .iter()
                .filter(|_| keep.forms)
                .map(|(form, page)| (*form, Arc::clone(page)))
                .collect(),
        };
        let written = self.writer.write(job).await;
        drop(keep.hold);
        if let Err(e) = written {
            tracing::error!(ecosystem = S::ECOSYSTEM.as_str(), page = %S::store_key(key), error = %e, "could not store a refreshed page; serving it anyway");
        }
    }

    async fn forget(&self, keys: &[S::Key], keep_snapshots: bool) -> Result<bool, CacheError> {
        for key in keys {
            for form in S::forms(key) {
                self.l1.invalidate(&(key.clone(), *form)).await;
            }
        }
        let store = self.store.clone();
        let names: Vec<String> = keys.iter().map(S::store_key).collect();
        blocking(move || {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            store.forget(S::ECOSYSTEM, &names, keep_snapshots)
        })
        .await
    }
}

/// Hands memory the allocator holds free back to the system. glibc keeps freed memory in its
/// heaps for reuse; after a big page's refresh (hundreds of MB parsed, rendered and freed at once)
/// it would otherwise stay resident for the life of the process.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and only returns the allocator's own free pages; it
    // is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::storage::Catalogue;
    use crate::upstream::UpstreamError;

    /// What the fake upstream answers next.
    #[derive(Clone, Copy)]
    enum Next {
        Page { ttl: u64 },
        Down,
        Gone,
    }

    /// A source whose upstream counts its fetches and answers what the test says.
    struct FakeSource {
        fetches: AtomicUsize,
        next: Mutex<Next>,
        /// How long a fetch takes, so concurrent requests overlap.
        delay: Duration,
    }

    impl PageSource for FakeSource {
        type Key = String;
        const ECOSYSTEM: Ecosystem = Ecosystem::Pypi;

        fn forms(_: &String) -> &'static [PageForm] {
            &[PageForm::Html, PageForm::Json]
        }

        fn store_key(key: &String) -> String {
            key.clone()
        }

        fn upstreams(&self) -> Upstreams {
            Upstreams::Available
        }

        async fn refresh(
            self: Arc<Self>,
            key: String,
            _stored: Option<Arc<StoredPage>>,
            _mode: Refresh,
        ) -> Result<Refreshed, CacheError> {
            let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(self.delay).await;
            let next = *self.next.lock().unwrap();
            match next {
                Next::Page { ttl } => {
                    let page = |form: PageForm| {
                        Arc::new(StoredPage {
                            header: PageHeader {
                                etag: format!("\"{n}\""),
                                fetched_at: unix_now(),
                                expires_at: unix_now() + ttl,
                                sources: SOURCES.into(),
                                upstream_etag: None,
                            },
                            identity: Bytes::from(format!("{key} {} #{n}", form.as_str())),
                            gzip: Bytes::new(),
                            zstd: Bytes::new(),
                        })
                    };
                    Ok(Refreshed::Page {
                        forms: vec![
                            (PageForm::Html, page(PageForm::Html)),
                            (PageForm::Json, page(PageForm::Json)),
                        ],
                        outcome: CacheOutcome::Miss,
                        keep: Keep::forms(),
                    })
                }
                Next::Down => Err(CacheError::Upstream(UpstreamError::Body {
                    index: "fake".into(),
                    path: key,
                    detail: "down".into(),
                })),
                Next::Gone => Ok(Refreshed::Gone(CacheError::NotFound("gone".into()))),
            }
        }
    }

    const SOURCES: &str = "fake@60";

    fn cache(dir: &std::path::Path, next: Next) -> PageCache<FakeSource> {
        let source = FakeSource {
            fetches: AtomicUsize::new(0),
            next: Mutex::new(next),
            delay: Duration::from_millis(50),
        };
        PageCache::new(
            Arc::new(source),
            SOURCES.into(),
            PageStore::open(&dir.join("pages.redb"), &dir.join("page-bodies")).unwrap(),
            Catalogue::open(&dir.join("catalogue.db")).unwrap(),
            PageCacheSettings {
                l1_bytes: 1 << 20,
                refresh_wait: Duration::from_secs(5),
                refresh_ahead: 0.0,
            },
            Arc::default(),
            Handle::current(),
        )
    }

    fn fetches(cache: &PageCache<FakeSource>) -> usize {
        cache.source().fetches.load(Ordering::SeqCst)
    }

    fn answer(cache: &PageCache<FakeSource>, next: Next) {
        *cache.source().next.lock().unwrap() = next;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_for_both_forms_share_one_refresh() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(cache(dir.path(), Next::Page { ttl: 60 }));
        let requests = (0..20).map(|i| {
            let cache = Arc::clone(&cache);
            let form = if i % 2 == 0 {
                PageForm::Html
            } else {
                PageForm::Json
            };
            tokio::spawn(async move { (form, cache.get("demo".into(), form).await.unwrap()) })
        });
        for request in requests {
            let (form, served) = request.await.unwrap();
            // A request that starts after the refresh ended finds its result stored: a hit.
            assert_eq!(served.page.identity, format!("demo {} #1", form.as_str()));
        }
        assert_eq!(fetches(&cache), 1);
        let again = cache.get("demo".into(), PageForm::Json).await.unwrap();
        assert_eq!((again.outcome, fetches(&cache)), (CacheOutcome::Hit, 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_page_is_served_stale_while_the_upstream_is_down() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path(), Next::Page { ttl: 0 });
        cache.get("demo".into(), PageForm::Html).await.unwrap();
        answer(&cache, Next::Down);
        let stale = cache.get("demo".into(), PageForm::Html).await.unwrap();
        assert_eq!(stale.outcome, CacheOutcome::Stale);
        assert_eq!(stale.page.identity, "demo html #1");
        assert_eq!(
            fetches(&cache),
            2,
            "the expired page was refreshed, and that failed"
        );
        let missing = cache.get("other".into(), PageForm::Html).await.unwrap_err();
        assert!(matches!(missing, CacheError::Upstream(_)), "{missing:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pages_survive_a_restart_and_gone_pages_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        {
            let cache = cache(dir.path(), Next::Page { ttl: 60 });
            cache.get("demo".into(), PageForm::Html).await.unwrap();
        }
        let cache = cache(dir.path(), Next::Gone);
        let stored = cache.get("demo".into(), PageForm::Json).await.unwrap();
        assert_eq!((stored.outcome, fetches(&cache)), (CacheOutcome::Hit, 0));
        let gone = cache
            .refresh("demo".into(), PageForm::Json, Refresh::Revalidate)
            .await
            .unwrap_err();
        assert!(matches!(gone, CacheError::NotFound(_)), "{gone:?}");
        assert!(
            cache
                .stored(&"demo".into(), PageForm::Html)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            !cache.forget(&["demo".into()], false).await.unwrap(),
            "nothing left to forget"
        );
    }
}
