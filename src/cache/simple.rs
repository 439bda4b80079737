//! The Simple API page flow: L1 (memory) → page store (disk) → single-flight refresh from every
//! configured index → merge → render both formats once → compress once → catalogue + page store.
//!
//! Each index keeps its own snapshot and TTL, so a fresh main index is not refetched because an
//! extra index expired. When an index fails and a snapshot of it exists, the snapshot is used and
//! the answer is marked stale; only when nothing at all can be said is the request an error.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use sha2::{Digest, Sha256};
use tokio::runtime::Handle;
use tokio::sync::OwnedMutexGuard;
use url::Url;

use super::hosted::{HostedIndex, HostedPypi};
use super::pages::{Keep, PageCache, PageCacheSettings, PageSource, Refresh, Refreshed, Served, Upstreams};
use super::snapshot::{Snapshot, SnapshotContent, StoredSnapshot};
use super::{CacheCounters, CacheError, CacheOutcome, blocking, unix_now};
use crate::config::{ExtraIndexStrategy, IndexConfig, OnlyFrom, PypiConfig};
use crate::ecosystem::Ecosystem;
use crate::live::Live;
use crate::policy::{Check, Policy, SharedPolicy};
use crate::pypi::hosted::HostedProject;
use crate::pypi::model::{DistFile, Hashes, PageMeta, ProjectList, ProjectPage};
use crate::pypi::negotiate::Format;
use crate::pypi::policy as pypi_policy;
use crate::pypi::{
    Parsed, merge, name, parse_list_html, parse_list_json, parse_project_html, parse_project_json,
    provenance, render,
};
use crate::storage::catalogue::{CatalogueCounts, FileRecord, ProjectRecord};
use crate::storage::pages::{PageCounts, PageForm, PageHeader, PageKey, StoredPage};
use crate::storage::{Catalogue, PageStore};
use crate::upstream::{
    FailureKind, Fetched, IndexHealth, IndexHealthReport, MemberReport, PageFormat, PageRequest,
    SimpleClient, UpstreamError, UpstreamPool,
};

const ECOSYSTEM: Ecosystem = Ecosystem::Pypi;
/// The page-store key of the project list; no normalized project name contains a `/`.
const LIST_KEY: &str = "/";
/// Where the project list keeps the hosted names it was last rendered with (no index URL looks
/// like this).
const HOSTED_SNAPSHOT: &str = "hosted";
/// How long a hosted project's page (and the list, with hosted indexes) is served before the
/// records are read again.
const HOSTED_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// A page of the Simple API.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PageRef {
    List,
    /// A project, by normalized name.
    Project(String),
}

impl PageRef {
    fn key(&self) -> &str {
        match self {
            Self::List => LIST_KEY,
            Self::Project(name) => name,
        }
    }

    fn upstream_path(&self) -> String {
        match self {
            Self::List => String::new(),
            Self::Project(name) => format!("{name}/"),
        }
    }
}

/// Which indexes a page is built from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum View {
    /// `/simple/`: the hosted indexes first, then `pypi.only_from`, then every upstream.
    All,
    /// `/indexes/{name}/simple/`: one upstream or hosted index on its own.
    Index(Arc<str>),
}

/// A page as one view shows it: what the page cache keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ViewPage {
    pub view: View,
    pub page: PageRef,
}

impl ViewPage {
    /// Where the page store keeps it: a view's pages and snapshots apart from `/simple/`'s (`@`
    /// is in no normalized project name).
    pub fn store_key(&self) -> String {
        match &self.view {
            View::All => self.page.key().to_owned(),
            View::Index(name) => format!("@{name}/{}", self.page.key()),
        }
    }
}

/// The indexes one refresh asks.
struct Plan<'a> {
    /// Asked first: a project any of them has is served from them alone.
    hosted: HostedAsk<'a>,
    upstreams: Vec<&'a Index>,
    /// The `only_from` rule that chose the upstreams, if one did.
    rule: Option<&'a OnlyFrom>,
}

#[derive(Clone, Copy)]
enum HostedAsk<'a> {
    Skip,
    /// Every hosted index (`None`) or the one named.
    Ask(Option<&'a str>),
}

/// What the stores hold.
#[derive(Debug, Clone, Copy)]
pub struct StorageCounts {
    pub catalogue: CatalogueCounts,
    pub pages: PageCounts,
}

/// An upstream page bigger than this is parsed, merged, rendered and stored by one refresh at a
/// time: each takes several times its size in memory until it is stored.
const BIG_PAGE_BYTES: usize = 8 << 20;

/// One refresh's share of the big-page lock: taken when the refresh first meets a big page (before
/// parsing it), held until what the refresh produced is stored. A refresh takes it at most once,
/// so two big indexes of one page never wait on each other.
#[derive(Default)]
struct BigPageWork {
    guard: tokio::sync::Mutex<Option<OwnedMutexGuard<()>>>,
}

impl BigPageWork {
    async fn hold(&self, lock: &Arc<tokio::sync::Mutex<()>>) {
        let mut guard = self.guard.lock().await;
        if guard.is_none() {
            *guard = Some(Arc::clone(lock).lock_owned().await);
        }
    }

    fn into_guard(self) -> Option<OwnedMutexGuard<()>> {
        self.guard.into_inner()
    }
}

/// Where PyPI pages come from (the hosted indexes first, then the upstreams in lookup order) and
/// what they link.
pub struct PypiIndexes {
    pub upstreams: Vec<Index>,
    pub hosted: Arc<HostedPypi>,
    pub strategy: ExtraIndexStrategy,
    pub only_from: Vec<OnlyFrom>,
    /// What of their files is served (`[policy]`; hosted files are exempt).
    pub policy: Arc<SharedPolicy>,
    /// `server.public_url`: when it is https, pages link each file's provenance at the mirror.
    pub public_url: Option<Url>,
}

/// One configured upstream index at run time.
pub struct Index {
    /// As configured at start; a reload replaces the members and the TTL (below).
    pub config: IndexConfig,
    /// Catalogue id of the index.
    pub id: i64,
    /// The index as a whole: failing when every member failed.
    pub health: IndexHealth,
    pub pool: UpstreamPool,
    ttl: Live<Duration>,
}

impl Index {
    pub fn new(config: IndexConfig, id: i64) -> Self {
        Self {
            pool: UpstreamPool::new(config.urls.members()),
            ttl: Live::new(config.ttl),
            config,
            id,
            health: IndexHealth::default(),
        }
    }

    fn key(&self) -> String {
        self.config.urls.cache_key()
    }

    fn ttl(&self) -> Duration {
        *self.ttl.current()
    }

    /// The index for humans: its first URL, redacted.
    fn shown(&self) -> String {
        self.config.urls.primary().redacted()
    }
}

/// What a refresh learned from one index.
enum IndexAnswer {
    /// Within its TTL: not asked.
    Fresh(Snapshot),
    /// Asked; the snapshot is new or revalidated. `changed` is false for a 304.
    Updated { snapshot: Snapshot, changed: bool },
    /// Asked and failed (or backing off); the old snapshot stands in.
    Stale(Snapshot),
    /// Asked and failed with nothing to stand in.
    Failed(UpstreamErrorKind),
}

enum UpstreamErrorKind {
    /// No usable answer came back.
    Transport(UpstreamError),
    /// The index answered with something pkgmirror cannot read.
    Data(String),
}

impl UpstreamErrorKind {
    fn message(&self) -> String {
        match self {
            Self::Transport(e) => e.to_string(),
            Self::Data(e) => e.clone(),
        }
    }

    fn health_kind(&self) -> FailureKind {
        match self {
            Self::Transport(_) => FailureKind::Unreachable,
            Self::Data(_) => FailureKind::Unreadable,
        }
    }
}

/// What one fetch from an index brought.
enum FetchedPage {
    /// 304: the stored snapshot stands.
    NotModified,
    /// A new snapshot, with the malformed entries its page left out.
    New {
        snapshot: Box<Snapshot>,
        dropped: Vec<String>,
    },
}

/// A fetch that failed, and whether it failed on a JSON page the index could be asked for in HTML.
struct FetchFailure {
    error: UpstreamErrorKind,
    unreadable_json: bool,
}

/// The form a Simple API format is stored as.
fn form_of(format: Format) -> PageForm {
    match format {
        Format::Html => PageForm::Html,
        Format::Json => PageForm::Json,
    }
}

/// The PyPI Simple API pages: the shared page cache in front of every configured index.
pub struct SimplePages {
    cache: PageCache<SimpleSource>,
}

/// How a Simple API page is refreshed: each index asked on its own TTL, the answers merged and
/// rendered in both formats.
struct SimpleSource {
    indexes: Vec<Index>,
    /// Asked first: a project any hosted index has is served from the hosted indexes alone.
    hosted: Arc<HostedPypi>,
    strategy: ExtraIndexStrategy,
    only_from: Vec<OnlyFrom>,
    policy: Arc<SharedPolicy>,
    /// The https public URL under which pages link the mirror's provenance route (PEP 740 wants
    /// an https URL: without one, the indexes' https links pass through).
    provenance_from: Option<Url>,
    /// Identifies the configured index set; pages built from another set are rebuilt.
    sources: String,
    client: SimpleClient,
    pages: PageStore,
    catalogue: Catalogue,
    counters: Arc<CacheCounters>,
    /// Held by the refresh working on a big page (see [`BigPageWork`]).
    big_pages: Arc<tokio::sync::Mutex<()>>,
}

impl SimplePages {
    pub fn new(
        PypiIndexes {
            upstreams: indexes,
            hosted,
            strategy,
            only_from,
            policy,
            public_url,
        }: PypiIndexes,
        client: SimpleClient,
        pages: PageStore,
        catalogue: Catalogue,
        settings: PageCacheSettings,
        counters: Arc<CacheCounters>,
        runtime: Handle,
    ) -> Self {
        let provenance_from = public_url.filter(|url| url.scheme() == "https");
        let sources = indexes
            .iter()
            .map(|i| format!("{}={}@{}", i.config.name, i.key(), i.ttl().as_secs()))
            .chain(hosted.names().map(HostedIndex::catalogue_url))
            .chain((strategy == ExtraIndexStrategy::FirstIndex).then(|| strategy.as_str().to_owned()))
            .chain(
                only_from
                    .iter()
                    .map(|rule| format!("only:{}={}", rule.pattern, rule.index)),
            )
            // Pages linking the mirror's provenance route are rendered again when its URL changes.
            .chain(provenance_from.as_ref().map(|url| format!("provenance:{url}")))
            // Pages the policy filtered are rendered again when it changes.
            .chain(policy.current().is_active().then(|| {
                let digest = Sha256::digest(format!("{:?}", policy.current().config()).as_bytes());
                format!("policy:{}", hex::encode(&digest[..8]))
            }))
            .collect::<Vec<_>>()
            .join(" ");
        let source = SimpleSource {
            indexes,
            hosted,
            strategy,
            only_from,
            policy,
            provenance_from,
            sources: sources.clone(),
            client,
            pages: pages.clone(),
            catalogue: catalogue.clone(),
            counters: Arc::clone(&counters),
            big_pages: Arc::default(),
        };
        Self {
            cache: PageCache::new(
                Arc::new(source),
                sources,
                pages,
                catalogue,
                settings,
                counters,
                runtime,
            ),
        }
    }

    /// Whether a reload can put `config`'s upstreams in force: the same indexes, by name and in
    /// order (their URLs and TTLs may change). Otherwise why a restart is needed.
    pub fn can_replace_upstreams(&self, config: &PypiConfig) -> Result<(), String> {
        let running: Vec<&str> = self
            .cache
            .source()
            .indexes
            .iter()
            .map(|i| i.config.name.as_str())
            .collect();
        let wanted = config.indexes();
        let wanted: Vec<&str> = wanted.iter().map(|i| i.name.as_str()).collect();
        if running == wanted {
            Ok(())
        } else {
            Err(format!(
                "the upstream indexes are {wanted:?}, not {running:?}: adding, removing or renaming one needs a restart"
            ))
        }
    }

    /// Puts `config`'s upstream URLs (each index's pool members) and TTLs in force; see
    /// [`Self::can_replace_upstreams`]. Each index keeps its identity (its first URL at start)
    /// until a restart, so its cached pages stay.
    pub fn replace_upstreams(&self, config: &PypiConfig) {
        for (index, wanted) in self.cache.source().indexes.iter().zip(config.indexes()) {
            index.pool.replace(wanted.urls.members());
            index.ttl.replace(wanted.ttl);
        }
    }

    /// Probes the pool members left out after a failure, putting back those that answer.
    pub async fn probe_left_out(&self) {
        let source = self.cache.source();
        for index in &source.indexes {
            for member in index.pool.left_out() {
                let outcome = source.client.probe(&member.url).await;
                index.pool.probed(&member, outcome);
            }
        }
    }

    /// Each upstream index's name, redacted URL, health and its members' health.
    pub fn health_reports(&self) -> Vec<(String, String, IndexHealthReport, Vec<MemberReport>)> {
        self.cache
            .source()
            .indexes
            .iter()
            .map(|i| {
                (
                    i.config.name.clone(),
                    i.shown(),
                    i.health.report(),
                    i.pool.reports(),
                )
            })
            .collect()
    }

    /// What the catalogue and page store hold, for `/health` and stats.
    pub async fn storage_counts(&self) -> Result<StorageCounts, CacheError> {
        let catalogue = self.cache.source().catalogue.clone();
        let pages = self.cache.source().pages.clone();
        blocking(move || {
            Ok(StorageCounts {
                catalogue: catalogue.counts()?,
                pages: pages.counts()?,
            })
        })
        .await
    }

    /// Pages held in memory right now.
    pub async fn l1_entries(&self) -> u64 {
        self.cache.l1_entries().await
    }

    /// The view `/indexes/{name}/simple/` names, if an upstream or hosted index has that name.
    pub fn view(&self, name: &str) -> Option<View> {
        let source = self.cache.source();
        let known = source.indexes.iter().any(|i| i.config.name == name) || source.hosted.has_index(name);
        known.then(|| View::Index(name.into()))
    }

    /// Every view: `/simple/` and each index on its own.
    fn views(&self) -> impl Iterator<Item = View> + '_ {
        let source = self.cache.source();
        let names = source
            .indexes
            .iter()
            .map(|i| i.config.name.as_str())
            .chain(source.hosted.names());
        std::iter::once(View::All).chain(names.map(|name| View::Index(name.into())))
    }

    /// Answers a page of a view in `format` (see [`PageCache::get`]).
    pub async fn get(&self, view: &View, page: PageRef, format: Format) -> Result<Served, CacheError> {
        let key = ViewPage {
            view: view.clone(),
            page,
        };
        self.cache.get(key, form_of(format)).await
    }

    /// Asks the view's indexes again now, TTL or not (a file was asked for that the cached page
    /// does not list: the project may have released since). Shares any refresh under way.
    pub async fn revalidate(&self, view: &View, page: PageRef, format: Format) -> Result<Served, CacheError> {
        let key = ViewPage {
            view: view.clone(),
            page,
        };
        self.cache
            .refresh(key, form_of(format), Refresh::Revalidate)
            .await
    }

    /// Forgets a page in every view (memory and disk), so the next request refetches it.
    /// Returns whether any view had it cached.
    pub async fn forget(&self, page: PageRef) -> Result<bool, CacheError> {
        self.forget_in_views(page, false).await
    }

    /// Drops a page's renderings in every view but keeps what the indexes said: the next request
    /// renders it again without asking upstream (used when pkgmirror itself learned something new
    /// about the project: an upload, metadata extracted from a wheel).
    pub async fn forget_rendering(&self, page: PageRef) -> Result<bool, CacheError> {
        self.forget_in_views(page, true).await
    }

    async fn forget_in_views(&self, page: PageRef, keep_snapshots: bool) -> Result<bool, CacheError> {
        let keys: Vec<ViewPage> = self
            .views()
            .map(|view| ViewPage {
                view,
                page: page.clone(),
            })
            .collect();
        self.cache.forget(&keys, keep_snapshots).await
    }

    /// A file of `project` as the stored page of the view of index `name` lists it. Views keep no
    /// catalogue rows (those are `/simple/`'s), so this reads the view's own snapshot.
    pub async fn listed_in_view(
        &self,
        name: &str,
        project: &str,
        filename: &str,
    ) -> Result<Option<FileRecord>, CacheError> {
        let source = self.cache.source();
        let (index_id, index_key) = match source.indexes.iter().find(|i| i.config.name == name) {
            Some(index) => (index.id, index.key()),
            None => match source.hosted.index(name) {
                Some(hosted) => (hosted.id, hosted.snapshot_key()),
                None => return Ok(None),
            },
        };
        let store = source.pages.clone();
        let key = ViewPage {
            view: View::Index(name.into()),
            page: PageRef::Project(project.to_owned()),
        }
        .store_key();
        let stored = blocking(move || {
            Ok(store
                .snapshots(ECOSYSTEM, &key)?
                .into_iter()
                .find(|(index, _)| *index == index_key)
                .and_then(|(_, bytes)| StoredSnapshot::read(bytes)))
        })
        .await?;
        let Some(snapshot) = stored else {
            return Ok(None);
        };
        let Some(Snapshot {
            content: SnapshotContent::Project(page),
            ..
        }) = snapshot.decode().await
        else {
            return Ok(None);
        };
        Ok(page
            .files
            .into_iter()
            .find(|f| f.filename == filename)
            .map(|file| file_record(file, index_id, project, false)))
    }

    /// Forgets every page, the project list included; returns how many were stored.
    pub async fn forget_all(&self) -> Result<u64, CacheError> {
        self.cache.forget_all(false).await
    }

    /// Drops every rendering but keeps what the indexes said: the pages are rendered again (the
    /// release policy changed), upstreams asked only as their TTLs say.
    pub async fn render_all_again(&self) -> Result<u64, CacheError> {
        self.cache.forget_all(true).await
    }

    /// When the stored page of a project (by normalized name) was fetched and when it expires,
    /// if one is stored.
    pub async fn page_times(&self, name: &str) -> Result<Option<(u64, u64)>, CacheError> {
        let key = ViewPage {
            view: View::All,
            page: PageRef::Project(name.to_owned()),
        };
        let page = self.cache.stored(&key, PageForm::Html).await?;
        Ok(page.map(|p| (p.header.fetched_at, p.header.expires_at)))
    }
}

impl PageSource for SimpleSource {
    type Key = ViewPage;
    const ECOSYSTEM: Ecosystem = ECOSYSTEM;

    fn forms(_: &ViewPage) -> &'static [PageForm] {
        &[PageForm::Html, PageForm::Json]
    }

    fn store_key(key: &ViewPage) -> String {
        key.store_key()
    }

    fn upstreams(&self) -> Upstreams {
        if !self.hosted.is_empty() {
            // The hosted indexes are always there to ask (they are this mirror's own).
            Upstreams::Available
        } else if self.indexes.is_empty() {
            Upstreams::None
        } else if self.indexes.iter().all(|i| i.health.backing_off()) {
            Upstreams::BackingOff
        } else {
            Upstreams::Available
        }
    }

    async fn refresh(
        self: Arc<Self>,
        key: ViewPage,
        _stored: Option<Arc<StoredPage>>,
        mode: Refresh,
    ) -> Result<Refreshed, CacheError> {
        let now = unix_now();
        let page = &key.page;
        let plan = self.plan(&key);
        if let (PageRef::Project(name), HostedAsk::Ask(only)) = (page, plan.hosted) {
            // An error here must not fall through to the upstreams: that would let a public
            // project shadow the hosted one. The stored copy stands in, if there is one.
            let hosted = self.hosted.find(only, name).await.map_err(|e| {
                CacheError::StorageUnavailable(format!("the hosted indexes cannot be read: {e}"))
            })?;
            if !hosted.is_empty() {
                return self.hosted_page(&key, hosted, now);
            }
        }
        if plan.upstreams.is_empty() && (matches!(plan.hosted, HostedAsk::Skip) || page != &PageRef::List) {
            return Err(CacheError::NotFound(match page {
                PageRef::List => "no upstream configured and no project list is cached".into(),
                PageRef::Project(name) if key.view == View::All && plan.rule.is_none() => {
                    format!("project '{name}' is not cached and no upstream is configured")
                }
                PageRef::Project(name) => not_listed(&key.view, name, plan.rule),
            }));
        }
        let force = mode != Refresh::IfStale;
        let store = self.pages.clone();
        let store_key = key.store_key();
        let mut snapshots: HashMap<String, StoredSnapshot> = blocking(move || {
            Ok(store
                .snapshots(ECOSYSTEM, &store_key)?
                .into_iter()
                .filter_map(|(index, bytes)| Some((index, StoredSnapshot::read(bytes)?)))
                .collect())
        })
        .await?;

        let work = BigPageWork::default();
        let answers = join_all(
            plan.upstreams
                .iter()
                .map(|index| self.ask(index, page, snapshots.remove(&index.key()), now, force, &work)),
        )
        .await;

        let mut contents = Vec::new();
        let mut first_error = None;
        let (mut stale, mut fetched, mut changed) = (false, false, false);
        let mut expires_at = u64::MAX;
        let mut snapshot_writes = Vec::new();
        // Where the first index listing the project is in `contents`, and whether an index
        // before it failed (then first-index cannot tell which index comes first).
        let mut first_listing = None;
        for (index, answer) in plan.upstreams.iter().zip(answers) {
            let snapshot = match answer {
                IndexAnswer::Fresh(snapshot) => snapshot,
                IndexAnswer::Updated {
                    snapshot,
                    changed: content_changed,
                } => {
                    fetched = true;
                    changed |= content_changed;
                    snapshot_writes.push((index.key(), snapshot.encode()?));
                    snapshot
                }
                IndexAnswer::Stale(snapshot) => {
                    stale = true;
                    snapshot
                }
                IndexAnswer::Failed(error) => {
                    stale = true;
                    first_error.get_or_insert(error);
                    continue;
                }
            };
            expires_at = expires_at.min(snapshot.fetched_at.saturating_add(index.ttl().as_secs()));
            if first_listing.is_none() && matches!(snapshot.content, SnapshotContent::Project(_)) {
                first_listing = Some((contents.len(), first_error.is_some()));
            }
            contents.push((index.id, snapshot.content));
        }
        if self.strategy == ExtraIndexStrategy::FirstIndex
            && let Some((at, failed_before)) = first_listing
        {
            if failed_before {
                // An earlier index might list the project too: never let a later one decide.
                return Err(match first_error {
                    Some(UpstreamErrorKind::Transport(e)) => CacheError::Upstream(e),
                    Some(UpstreamErrorKind::Data(e)) => CacheError::UpstreamData(e),
                    None => CacheError::Internal("an index failed without an error".into()),
                });
            }
            contents = vec![contents.swap_remove(at)];
        }
        if let (PageRef::List, HostedAsk::Ask(only)) = (page, plan.hosted) {
            // The hosted names join the list; kept as a snapshot of their own so the list is
            // rendered again only when they change.
            let names = self.hosted.project_names(only).await.map_err(|e| {
                CacheError::StorageUnavailable(format!("the hosted indexes cannot be read: {e}"))
            })?;
            let previous = match snapshots.remove(HOSTED_SNAPSHOT) {
                Some(stored) => stored.decode().await,
                None => None,
            };
            let same = previous
                .is_some_and(|s| matches!(&s.content, SnapshotContent::List(l) if l.projects == names));
            let list = SnapshotContent::List(ProjectList {
                projects: names,
                meta: PageMeta::default(),
            });
            if !same {
                changed = true;
                let snapshot = Snapshot {
                    fetched_at: now,
                    etag: None,
                    content: list.clone(),
                };
                snapshot_writes.push((HOSTED_SNAPSHOT.to_owned(), snapshot.encode()?));
            }
            expires_at = expires_at.min(now.saturating_add(HOSTED_TTL.as_secs()));
            contents.push((0, list));
        }

        let found = contents
            .iter()
            .any(|(_, c)| !matches!(c, SnapshotContent::Missing));
        if !found {
            return Err(match first_error {
                Some(UpstreamErrorKind::Transport(e)) => CacheError::Upstream(e),
                Some(UpstreamErrorKind::Data(e)) => CacheError::UpstreamData(e),
                None => CacheError::NotFound(match page {
                    PageRef::List => "no configured index has a project list".into(),
                    PageRef::Project(name) => not_listed(&key.view, name, plan.rule),
                }),
            });
        }
        if stale {
            // Revalidate on the next request (the back-off keeps that cheap while upstreams are down).
            expires_at = now;
        }
        let outcome = if stale {
            CacheOutcome::Stale
        } else if fetched && changed {
            CacheOutcome::Miss
        } else {
            CacheOutcome::Hit
        };

        // What the policy lets through depends on the time, so its pages are rendered afresh.
        let policy = self.policy.current();
        let previous = if changed || policy.is_active() {
            None
        } else {
            self.previous_rendering(&key).await?
        };
        let rendered = match previous {
            Some(previous) => Err(previous),
            None => {
                let extracted = self.extracted_metadata(page).await?;
                let first_seen = self.first_seen(page).await?;
                let served = PolicyInput {
                    policy: &policy,
                    first_seen: &first_seen,
                };
                let mirror = self.provenance_mirror(&key);
                let rendered =
                    render_pages(page, contents, &extracted, Some(served), mirror.as_deref(), now)?;
                if let Some(at) = rendered.next_change {
                    // Rendered again when a held-back file becomes eligible.
                    expires_at = expires_at.min(at);
                }
                for (filename, check) in &rendered.held {
                    let file = format!("{}/{}/{filename}", ECOSYSTEM.as_str(), page.key());
                    self.counters.count_held_back(file, *check);
                }
                Ok(rendered)
            }
        };
        let header = |etag: String| PageHeader {
            etag,
            fetched_at: now,
            expires_at,
            sources: self.sources.clone(),
            upstream_etag: None,
        };
        let (html, json, record) = match rendered {
            Err((html, json)) => (
                StoredPage {
                    header: header(html.header.etag.clone()),
                    ..html
                },
                StoredPage {
                    header: header(json.header.etag.clone()),
                    ..json
                },
                None,
            ),
            Ok(Rendered {
                html, json, record, ..
            }) => (
                compressed(html, header(String::new())),
                compressed(json, header(String::new())),
                record.filter(|_| key.view == View::All),
            ),
        };
        Ok(Refreshed::Page {
            forms: vec![(PageForm::Html, Arc::new(html)), (PageForm::Json, Arc::new(json))],
            outcome,
            // A stale answer changes no rendering on disk: what is stored is still the best we have.
            keep: Keep {
                snapshots: snapshot_writes,
                record,
                forms: !stale,
                hold: work.into_guard(),
            },
        })
    }
}

impl SimpleSource {
    /// Which indexes a refresh of `key` asks. `/simple/`: every hosted index first; then, for a
    /// project an `only_from` rule matches, the index it names alone (none when that is a hosted
    /// index: such a name never comes from an upstream); else every upstream.
    fn plan<'a>(&'a self, key: &'a ViewPage) -> Plan<'a> {
        match &key.view {
            View::Index(name) => match self.indexes.iter().find(|i| *i.config.name == **name) {
                Some(index) => Plan {
                    hosted: HostedAsk::Skip,
                    upstreams: vec![index],
                    rule: None,
                },
                // Views are only made for configured names (`SimplePages::view`).
                None => Plan {
                    hosted: HostedAsk::Ask(Some(name)),
                    upstreams: Vec::new(),
                    rule: None,
                },
            },
            View::All => {
                let rule = match &key.page {
                    PageRef::Project(name) => self.only_from.iter().find(|rule| rule.matches(name)),
                    PageRef::List => None,
                };
                let upstreams = self
                    .indexes
                    .iter()
                    .filter(|i| rule.is_none_or(|rule| rule.index == i.config.name))
                    .collect();
                let hosted = if self.hosted.is_empty() {
                    HostedAsk::Skip
                } else {
                    HostedAsk::Ask(None)
                };
                Plan {
                    hosted,
                    upstreams,
                    rule,
                }
            }
        }
    }

    /// A project the hosted indexes have, from their records alone (no upstream file is ever
    /// merged in). Rebuilt after [`HOSTED_TTL`], so an upload through another node on the same
    /// bucket shows within it; one through this node shows at once.
    fn hosted_page(
        &self,
        key: &ViewPage,
        hosted: Vec<(HostedIndex, HostedProject)>,
        now: u64,
    ) -> Result<Refreshed, CacheError> {
        let contents: Vec<(i64, SnapshotContent)> = hosted
            .iter()
            .map(|(index, project)| {
                (
                    index.id,
                    SnapshotContent::Project(project.page(&index.url_prefix())),
                )
            })
            .collect();
        // A view keeps no catalogue rows: its file route finds the files in these instead.
        let mut snapshots = Vec::new();
        if key.view != View::All {
            for ((index, _), (_, content)) in hosted.iter().zip(&contents) {
                let snapshot = Snapshot {
                    fetched_at: now,
                    etag: None,
                    content: content.clone(),
                };
                snapshots.push((index.snapshot_key(), snapshot.encode()?));
            }
        }
        // The team's own uploads are not held back by the release policy, and have no provenance.
        let Rendered {
            html, json, record, ..
        } = render_pages(&key.page, contents, &HashMap::new(), None, None, now)?;
        let header = PageHeader {
            etag: String::new(),
            fetched_at: now,
            expires_at: now.saturating_add(HOSTED_TTL.as_secs()),
            sources: self.sources.clone(),
            upstream_etag: None,
        };
        Ok(Refreshed::Page {
            forms: vec![
                (PageForm::Html, Arc::new(compressed(html, header.clone()))),
                (PageForm::Json, Arc::new(compressed(json, header))),
            ],
            outcome: CacheOutcome::Hit,
            keep: Keep {
                snapshots,
                record: record.filter(|_| key.view == View::All),
                forms: true,
                hold: None,
            },
        })
    }

    /// Asks one index about a page unless its snapshot is still fresh (or `force`).
    async fn ask(
        &self,
        index: &Index,
        page: &PageRef,
        old: Option<StoredSnapshot>,
        now: u64,
        force: bool,
        work: &BigPageWork,
    ) -> IndexAnswer {
        if let Some(old) = old {
            let fresh = !force && old.fetched_at.saturating_add(index.ttl().as_secs()) > now;
            if fresh || index.health.backing_off() {
                // A snapshot whose content cannot be read is no snapshot: the index is asked.
                if let Some(old) = old.decode().await {
                    return if fresh {
                        IndexAnswer::Fresh(old)
                    } else {
                        IndexAnswer::Stale(old)
                    };
                }
                return self.fetch(index, page, None, now, work).await;
            }
            return self.fetch(index, page, Some(old), now, work).await;
        }
        self.fetch(index, page, None, now, work).await
    }

    /// Fetches a page from one index. When its JSON cannot be read, the same index is asked for
    /// HTML before giving up, and its JSON is left alone for a while. The old snapshot is decoded
    /// only where it is used: after a 304, or to stand in for a failure.
    async fn fetch(
        &self,
        index: &Index,
        page: &PageRef,
        old: Option<StoredSnapshot>,
        now: u64,
        work: &BigPageWork,
    ) -> IndexAnswer {
        let redacted = index.shown();
        let etag = old.as_ref().and_then(|s| s.etag.as_deref());
        let request = if index.health.json_unusable() {
            PageRequest::HtmlOnly
        } else {
            PageRequest::JsonOrHtml
        };
        let mut result = self.fetch_as(index, page, etag, request, now, work).await;
        if let Err(FetchFailure {
            error: UpstreamErrorKind::Data(json_error),
            unreadable_json: true,
        }) = &result
        {
            let json_error = json_error.clone();
            tracing::warn!(index = %redacted, page = page.key(), error = %json_error, "unreadable JSON page; asking the index for HTML");
            index.health.mark_json_unusable(&json_error);
            result = self
                .fetch_as(index, page, None, PageRequest::HtmlOnly, now, work)
                .await
                .map_err(|html| FetchFailure {
                    error: UpstreamErrorKind::Data(format!(
                        "{json_error}; asked for HTML instead, and that failed too: {}",
                        html.error.message()
                    )),
                    unreadable_json: false,
                });
        }
        match result {
            Ok(FetchedPage::NotModified) => {
                index.health.record_success();
                match old {
                    Some(old) => match old.decode().await {
                        Some(old) => IndexAnswer::Updated {
                            snapshot: Snapshot {
                                fetched_at: now,
                                ..old
                            },
                            changed: false,
                        },
                        // What the 304 confirmed cannot be read: ask for the page itself.
                        None => Box::pin(self.fetch(index, page, None, now, work)).await,
                    },
                    // Checked in `fetch_as`: a 304 comes only to a conditional request.
                    None => IndexAnswer::Failed(UpstreamErrorKind::Data(format!(
                        "{redacted} answered 304 Not Modified to an unconditional request"
                    ))),
                }
            }
            Ok(FetchedPage::New { snapshot, dropped }) => {
                index.health.record_success();
                if snapshot.content.is_empty() && old.as_ref().is_some_and(|old| !old.lists_nothing) {
                    tracing::warn!(index = %redacted, page = page.key(), "the index no longer lists any file or project on this page; it is served empty");
                }
                if let Some(first) = dropped.first() {
                    tracing::warn!(index = %redacted, page = page.key(), dropped = dropped.len(), first = %first, "left malformed entries out of an upstream page");
                    index
                        .health
                        .record_dropped(dropped.len(), format!("page {}: {first}", page.key()));
                }
                IndexAnswer::Updated {
                    snapshot: *snapshot,
                    changed: true,
                }
            }
            Err(FetchFailure { error, .. }) => {
                let message = error.message();
                tracing::warn!(index = %redacted, page = page.key(), error = %message, "upstream failed");
                index.health.record_failure(error.health_kind(), &message);
                self.counters.count_upstream_error();
                match old {
                    Some(old) => match old.decode().await {
                        Some(old) => IndexAnswer::Stale(old),
                        None => IndexAnswer::Failed(error),
                    },
                    None => IndexAnswer::Failed(error),
                }
            }
        }
    }

    /// One request for a page in the formats `request` names, parsed into a snapshot.
    async fn fetch_as(
        &self,
        index: &Index,
        page: &PageRef,
        etag: Option<&str>,
        request: PageRequest,
        now: u64,
        work: &BigPageWork,
    ) -> Result<FetchedPage, FetchFailure> {
        let path = page.upstream_path();
        let fetched = index
            .pool
            .run(|member| {
                let path = &path;
                async move { self.client.fetch_page(&member, path, etag, request).await }
            })
            .await;
        if let Ok(Fetched::Page { body, .. }) = &fetched
            && body.len() > BIG_PAGE_BYTES
        {
            work.hold(&self.big_pages).await;
        }
        let data_error = |message: String, unreadable_json: bool| FetchFailure {
            error: UpstreamErrorKind::Data(message),
            unreadable_json,
        };
        match fetched {
            Ok(Fetched::NotModified) if etag.is_some() => Ok(FetchedPage::NotModified),
            Ok(Fetched::NotModified) => Err(data_error(
                format!(
                    "{} answered 304 Not Modified to an unconditional request",
                    index.shown()
                ),
                false,
            )),
            Ok(Fetched::NotFound) => Ok(FetchedPage::New {
                snapshot: Box::new(Snapshot {
                    fetched_at: now,
                    etag: None,
                    content: SnapshotContent::Missing,
                }),
                dropped: Vec::new(),
            }),
            Ok(Fetched::Page {
                body,
                format,
                etag,
                last_serial,
                url,
            }) => match parse_in_background(page.clone(), body, format, url, last_serial).await {
                // A 200 that is not an index page (a maintenance page, a login page a redirect led
                // to, JSON under another content type) must not pass for an empty project.
                Ok((content, _)) if format == PageFormat::Html && !content.says_it_is_an_index_page() => {
                    Err(data_error(
                        format!(
                            "{} answered with a page that is not a Simple API page (no file links and no \
                             pypi:repository-version meta tag), so it was not used",
                            index.shown()
                        ),
                        false,
                    ))
                }
                Ok((content, dropped)) => Ok(FetchedPage::New {
                    snapshot: Box::new(Snapshot {
                        fetched_at: now,
                        etag,
                        content,
                    }),
                    dropped,
                }),
                Err(e) => Err(data_error(
                    format!(
                        "{} sent a{} page pkgmirror cannot read: {e}",
                        index.shown(),
                        match format {
                            PageFormat::Json => " JSON",
                            PageFormat::Html => "n HTML",
                        }
                    ),
                    format == PageFormat::Json && request == PageRequest::JsonOrHtml,
                )),
            },
            Err(e) => Err(FetchFailure {
                error: UpstreamErrorKind::Transport(e),
                unreadable_json: false,
            }),
        }
    }

    /// Where a project page links its files' provenance at the mirror (see [`provenance`]), if it does.
    fn provenance_mirror(&self, key: &ViewPage) -> Option<String> {
        let PageRef::Project(name) = &key.page else {
            return None;
        };
        let index = match &key.view {
            View::All => None,
            View::Index(index) => Some(&**index),
        };
        let public_url = self.provenance_from.as_ref()?;
        Some(provenance::mirror_base(public_url, index, name))
    }

    /// When the mirror first listed each of the project's files, when the policy may need it.
    async fn first_seen(&self, page: &PageRef) -> Result<HashMap<String, u64>, CacheError> {
        let PageRef::Project(name) = page else {
            return Ok(HashMap::new());
        };
        if !self.policy.current().checks_time() {
            return Ok(HashMap::new());
        }
        let catalogue = self.catalogue.clone();
        let name = name.clone();
        blocking(move || catalogue.first_seen(ECOSYSTEM, &name)).await
    }

    /// Metadata pkgmirror extracted from the project's cached wheels (wheel sha256 → metadata sha256).
    async fn extracted_metadata(&self, page: &PageRef) -> Result<HashMap<String, String>, CacheError> {
        let PageRef::Project(name) = page else {
            return Ok(HashMap::new());
        };
        let catalogue = self.catalogue.clone();
        let name = name.clone();
        blocking(move || catalogue.project_wheel_metadata(ECOSYSTEM, &name)).await
    }

    async fn previous_rendering(
        &self,
        page: &ViewPage,
    ) -> Result<Option<(StoredPage, StoredPage)>, CacheError> {
        let store = self.pages.clone();
        let key = page.store_key();
        let sources = self.sources.clone();
        blocking(move || {
            let html = store.page(PageKey::new(ECOSYSTEM, &key, PageForm::Html))?;
            let json = store.page(PageKey::new(ECOSYSTEM, &key, PageForm::Json))?;
            Ok(match (html, json) {
                (Some(h), Some(j)) if h.header.sources == sources && j.header.sources == sources => {
                    Some((h, j))
                }
                _ => None,
            })
        })
        .await
    }
}

/// Why a project has no page in a view.
fn not_listed(view: &View, project: &str, rule: Option<&OnlyFrom>) -> String {
    match (view, rule) {
        (View::Index(index), _) => format!("project '{project}' is not on index '{index}'"),
        (View::All, Some(rule)) => format!(
            "project '{project}' is served only from index '{}' (pypi.only_from \"{rule}\"), which does not have it",
            rule.index
        ),
        (View::All, None) => format!("project '{project}' was not found on any configured index"),
    }
}

/// Parses an upstream page on the blocking pool (a big project list takes long enough to stall
/// other requests if parsed inline); also returns why malformed entries were left out.
async fn parse_in_background(
    page: PageRef,
    body: Bytes,
    format: PageFormat,
    url: Url,
    last_serial: Option<u64>,
) -> Result<(SnapshotContent, Vec<String>), String> {
    let (content, dropped) = tokio::task::spawn_blocking(move || {
        fn split<T>(parsed: Parsed<T>, wrap: fn(T) -> SnapshotContent) -> (SnapshotContent, Vec<String>) {
            (wrap(parsed.page), parsed.dropped)
        }
        match (&page, format) {
            (PageRef::List, PageFormat::Json) => {
                parse_list_json(&body).map(|p| split(p, SnapshotContent::List))
            }
            (PageRef::List, PageFormat::Html) => {
                parse_list_html(&body).map(|p| split(p, SnapshotContent::List))
            }
            (PageRef::Project(_), PageFormat::Json) => {
                parse_project_json(&body, &url).map(|p| split(p, SnapshotContent::Project))
            }
            (PageRef::Project(name), PageFormat::Html) => {
                parse_project_html(&body, &url, name).map(|p| split(p, SnapshotContent::Project))
            }
        }
        .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("the parser failed: {e}"))??;
    Ok((with_serial(content, last_serial), dropped))
}

/// The `X-PyPI-Last-Serial` header fills in a serial the body did not carry.
fn with_serial(mut content: SnapshotContent, header_serial: Option<u64>) -> SnapshotContent {
    let meta = match &mut content {
        SnapshotContent::Project(p) => &mut p.meta,
        SnapshotContent::List(l) => &mut l.meta,
        SnapshotContent::Missing => return content,
    };
    if meta.last_serial.is_none() {
        meta.last_serial = header_serial;
    }
    content
}

/// The release policy as a rendering applies it.
#[derive(Clone, Copy)]
struct PolicyInput<'a> {
    policy: &'a Policy,
    /// When the mirror first listed each file (filename → unix seconds).
    first_seen: &'a HashMap<String, u64>,
}

/// Both formats of a page; for a project, its catalogue record (every file the indexes list,
/// held back or not) and when a held-back file becomes eligible.
struct Rendered {
    html: String,
    json: String,
    record: Option<ProjectRecord>,
    next_change: Option<u64>,
    /// The files the policy left off, and the check that held each.
    held: Vec<(String, Check)>,
}

/// Merges the indexes' contents, applies the release policy (`None`: none applies) and renders
/// both formats, with provenance linked at `mirror` (a [`provenance::mirror_base`]) if given.
fn render_pages(
    page: &PageRef,
    contents: Vec<(i64, SnapshotContent)>,
    extracted: &HashMap<String, String>,
    served: Option<PolicyInput<'_>>,
    mirror: Option<&str>,
    now: u64,
) -> Result<Rendered, CacheError> {
    match page {
        PageRef::List => {
            let lists = contents
                .into_iter()
                .filter_map(|(_, c)| match c {
                    SnapshotContent::List(list) => Some(list),
                    _ => None,
                })
                .collect();
            let list = merge::merge_lists(lists);
            Ok(Rendered {
                html: render::render_list_html(&list),
                json: render::render_list_json(&list),
                record: None,
                next_change: None,
                held: Vec::new(),
            })
        }
        PageRef::Project(normalized) => {
            let (index_ids, pages): (Vec<i64>, Vec<ProjectPage>) = contents
                .into_iter()
                .filter_map(|(index_id, content)| match content {
                    SnapshotContent::Project(p) => Some((index_id, p)),
                    _ => None,
                })
                .unzip();
            let (mut merged, origins) = merge::merge_projects(pages)
                .ok_or_else(|| CacheError::Internal("no project page to merge".into()))?;
            let advertised = advertise_extracted_metadata(&mut merged, extracted);
            // Rendered with the links clients follow, recorded with the index's.
            let upstream_provenance = provenance::link(&mut merged, mirror);
            let applied =
                served.map(|s| pypi_policy::apply(&merged, normalized, s.policy, s.first_seen, now));
            let shown = applied.as_ref().and_then(|a| a.page.as_ref()).unwrap_or(&merged);
            let html = render::render_project_html(shown);
            let json = render::render_project_json(shown);
            let origins: Vec<i64> = origins.into_iter().map(|page| index_ids[page]).collect();
            let (next_change, held) = applied.map_or((None, Vec::new()), |a| (a.next_change, a.held));
            provenance::restore_upstream(&mut merged, upstream_provenance);
            let record = project_record(normalized, merged, &origins, &advertised, now);
            Ok(Rendered {
                html,
                json,
                record: Some(record),
                next_change,
                held,
            })
        }
    }
}

/// Offers the metadata extracted from cached wheels for wheels whose index offers none; says
/// which files it did this for.
fn advertise_extracted_metadata(page: &mut ProjectPage, extracted: &HashMap<String, String>) -> Vec<bool> {
    page.files
        .iter_mut()
        .map(|file| {
            let metadata = (file.core_metadata.is_none() && file.filename.ends_with(".whl"))
                .then(|| file.hashes.get("sha256").and_then(|sha| extracted.get(sha)))
                .flatten();
            if let Some(metadata) = metadata {
                file.core_metadata = Some(Hashes::from_iter([("sha256".to_owned(), metadata.clone())]));
            }
            metadata.is_some()
        })
        .collect()
}

/// The catalogue record of a merged page, which it consumes (the page is rendered by now). It
/// records what the indexes offer: metadata pkgmirror extracted itself (`advertised`) is only
/// advertised, so the `.metadata` route knows where each file's comes from.
fn project_record(
    normalized: &str,
    page: ProjectPage,
    origins: &[i64],
    advertised: &[bool],
    now: u64,
) -> ProjectRecord {
    let files = page
        .files
        .into_iter()
        .zip(origins)
        .zip(advertised)
        .map(|((file, &index_id), &advertised)| file_record(file, index_id, normalized, advertised))
        .collect();
    ProjectRecord {
        ecosystem: ECOSYSTEM,
        name: normalized.to_owned(),
        display_name: page.name,
        last_serial: page.meta.last_serial,
        status: page.project_status.map(|s| s.status),
        fetched_at: now,
        files,
    }
}

/// The catalogue row of one file an index lists (`advertised`: the metadata on the page is one
/// pkgmirror extracted, not the index's).
fn file_record(file: DistFile, index_id: i64, project: &str, advertised: bool) -> FileRecord {
    let metadata = if advertised { None } else { file.core_metadata };
    FileRecord {
        index_id,
        version: name::version_from_filename(&file.filename, project),
        sha256: file.hashes.get("sha256").cloned(),
        has_metadata: metadata.is_some(),
        metadata_sha256: metadata.and_then(|h| h.get("sha256").cloned()),
        filename: file.filename,
        url: file.url,
        size: file.size,
        requires_python: file.requires_python,
        yanked: file.yanked,
        upload_time: file.upload_time,
        inner_checksum: None,
        first_seen: None,
        provenance: file.provenance,
    }
}

/// Builds the stored form of a rendered page: its ETag and its gzip and zstd forms, made once here
/// so no request ever compresses.
fn compressed(body: String, mut header: PageHeader) -> StoredPage {
    let identity = Bytes::from(body);
    let digest = Sha256::digest(&identity);
    header.etag = format!("\"{}\"", hex::encode(&digest[..16]));
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(identity.len() / 4),
        flate2::Compression::default(),
    );
    // Writing to a Vec cannot fail; should it, the page is simply served uncompressed.
    let gzip = gz
        .write_all(&identity)
        .and_then(|()| gz.finish())
        .map(Bytes::from)
        .unwrap_or_default();
    let zstd = zstd::bulk::compress(&identity, 9)
        .map(Bytes::from)
        .unwrap_or_default();
    StoredPage {
        header,
        identity,
        gzip,
        zstd,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Pages link provenance at the mirror; the catalogue keeps the index's URL to fetch it from.
    #[test]
    fn pages_link_the_mirrors_provenance_and_the_record_keeps_the_indexs() {
        let upstream = "https://index.example/integrity/demo/1.0/demo-1.0.tar.gz/provenance";
        let page = ProjectPage {
            name: "demo".into(),
            files: vec![DistFile {
                provenance: Some(upstream.into()),
                ..DistFile::bare("demo-1.0.tar.gz", "https://files.example/demo-1.0.tar.gz")
            }],
            versions: None,
            project_status: None,
            meta: PageMeta::default(),
        };
        let render = |mirror| {
            let contents = vec![(1, SnapshotContent::Project(page.clone()))];
            let project = PageRef::Project("demo".into());
            render_pages(&project, contents, &HashMap::new(), None, mirror, 1).unwrap()
        };
        let mirrored = render(Some("https://mirror.example/simple/demo/"));
        let link = "https://mirror.example/simple/demo/demo-1.0.tar.gz.provenance";
        let json: serde_json::Value = serde_json::from_str(&mirrored.json).unwrap();
        assert_eq!(json["files"][0]["provenance"], link);
        assert!(mirrored.html.contains(&format!("data-provenance=\"{link}\"")));
        let record = mirrored.record.unwrap();
        assert_eq!(record.files[0].provenance.as_deref(), Some(upstream));

        let passed = render(None);
        let json: serde_json::Value = serde_json::from_str(&passed.json).unwrap();
        assert_eq!(json["files"][0]["provenance"], upstream);
    }

    #[tokio::test]
    async fn big_page_work_is_one_refresh_at_a_time_and_never_waits_on_itself() {
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        let first = BigPageWork::default();
        first.hold(&lock).await;
        // The same refresh meeting a second big page (another index) goes on.
        tokio::time::timeout(Duration::from_secs(5), first.hold(&lock))
            .await
            .expect("a refresh never waits for itself");
        let second = Arc::new(BigPageWork::default());
        let waiting = tokio::spawn({
            let (second, lock) = (Arc::clone(&second), Arc::clone(&lock));
            async move { second.hold(&lock).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "another refresh waits while the first holds it"
        );
        drop(first.into_guard());
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("released once the first refresh is stored")
            .unwrap();
    }
}
