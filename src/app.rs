//! Builds the application from its config, binds, and runs until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web;

use crate::cache::CacheCounters;
use crate::cache::downloads::{ACCESS_FLUSH_INTERVAL, Downloads};
use crate::cache::explorer::Explorer;
use crate::cache::files::PypiFiles;
use crate::cache::hex::{HexMirror, HexSettings};
use crate::cache::hex_hosted::{HexRepository, HostedHex};
use crate::cache::hosted::{HostedIndex, HostedPypi};
use crate::cache::ingest::Ingest;
use crate::cache::maintenance::{self, Evictor};
use crate::cache::pages::PageCacheSettings;
use crate::cache::policy::{PolicyRules, compose};
use crate::cache::simple::{Index, PypiIndexes, SimplePages};
use crate::config::Config;
use crate::ecosystem::Ecosystem;
use crate::hex::{HexPublicKey, HexSigningKey, RegistryVerifier};
use crate::http;
use crate::policy::SharedPolicy;
use crate::reload::{ReadConfig, Reloader, SetLogLevel};
use crate::state::AppState;
use crate::storage::blob::ConfiguredStore;
use crate::storage::data_dir::{self, DataDirLock, LockError};
use crate::storage::{Catalogue, PageStore, StorageError};
use crate::upstream::{FileClient, HexClient, SimpleClient};

/// How long a client may take to send a request's head (actix's default, stated).
const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection being closed may take to go.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long in-flight requests get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How often the evictor looks for downloads that finished (two in-memory reads).
const EVICTION_POLL: Duration = Duration::from_secs(1);
/// An eviction pass runs at least this often, whatever happened.
const EVICTION_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create the data dir {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("cannot open {path}: {source}")]
    Storage { path: String, source: StorageError },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}; stop it or use another --data-dir")]
    InUse(LockError),
    #[error("cannot start: {0}")]
    Startup(String),
}

/// Everything the server runs on, opened from the config.
struct Parts {
    catalogue: Catalogue,
    state: web::Data<AppState>,
    /// Held until the process has flushed everything: no other pkgmirror may manage the data dir.
    lock: DataDirLock,
}

/// Writes batched blob access times every few seconds, on the background runtime.
fn spawn_access_flusher(state: web::Data<AppState>, runtime: &tokio::runtime::Handle) {
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(ACCESS_FLUSH_INTERVAL);
        loop {
            tick.tick().await;
            if let Err(e) = state.downloads.flush_accesses().await {
                tracing::warn!(error = %e, "could not record blob accesses; will retry");
            }
        }
    });
}

/// How often the per-client rate state of clients that went quiet is dropped.
const IDLE_CLIENTS_INTERVAL: Duration = Duration::from_secs(60);

/// Drops the rate state of quiet clients now and then, so it holds only the active ones.
fn spawn_limit_cleaner(state: web::Data<AppState>, runtime: &tokio::runtime::Handle) {
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(IDLE_CLIENTS_INTERVAL);
        loop {
            tick.tick().await;
            state.limits.current().forget_idle();
        }
    });
}

/// Takes a reading of the counters for the home page's charts at start and every
/// [`crate::metrics::HISTORY_STEP`].
fn spawn_historian(state: web::Data<AppState>, runtime: &tokio::runtime::Handle) {
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(crate::metrics::HISTORY_STEP);
        loop {
            tick.tick().await;
            state.history.record(state.reading());
        }
    });
}

/// How often upstream pool members left out after a failure are probed.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Probes the upstream pool members left out after a failure, so they come back when they
/// answer again (passively, a failed member is asked only when every member failed).
fn spawn_prober(state: web::Data<AppState>, runtime: &tokio::runtime::Handle) {
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(PROBE_INTERVAL);
        loop {
            tick.tick().await;
            state.pages.probe_left_out().await;
            if let Some(hex) = &state.hex {
                hex.probe_left_out().await;
            }
        }
    });
}

/// Keeps the blob store within `storage.max_size`, on the background runtime: a pass soon after
/// each finished download and at least every minute.
fn spawn_evictor(state: web::Data<AppState>, runtime: &tokio::runtime::Handle) {
    if state.evictor.is_none() {
        return;
    }
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(EVICTION_POLL);
        let mut seen = None;
        let mut last_pass: Option<Instant> = None;
        loop {
            tick.tick().await;
            // Every download counts a miss when it starts and leaves the registry when it ends
            // (after its blob is recorded), so a download that finished since the last look
            // changed one of these.
            let activity = (
                state.counters.snapshot().misses,
                state.downloads.downloads_in_progress(),
            );
            let due = last_pass.is_none_or(|at| at.elapsed() >= EVICTION_INTERVAL);
            if !due && seen == Some(activity) {
                continue;
            }
            seen = Some(activity);
            last_pass = Some(Instant::now());
            // Hits still batched in memory count as uses: flush them first, or a blob served a
            // moment ago could look least recently used.
            if let Err(e) = state.downloads.flush_accesses().await {
                tracing::warn!(error = %e, "could not record blob accesses before eviction; will retry");
                continue;
            }
            if let Some(evictor) = &state.evictor
                && let Err(e) = evictor.run(&state.downloads.downloading()).await
            {
                tracing::warn!(error = %e, "eviction failed; will retry");
            }
        }
    });
}

/// glibc gives a thread that meets contention an allocator arena of its own, up to eight per
/// core, and each arena keeps what was freed in it. The blocking pool's threads (one per disk read
/// that would wait: dozens while a cold file streams to many clients) each left one behind: 50
/// clients on a cold 1 GiB file peaked at 88 MB RSS, and at 48 MB with one arena per core.
fn limit_allocator_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
        // SAFETY: mallopt takes no pointers and only sets an allocator parameter; it is called
        // before the server starts its threads.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, i32::try_from(cores).unwrap_or(i32::MAX));
        }
    }
}

/// On SIGHUP, reloads the configuration ([`crate::reload`]). Registered before the server
/// starts, so a SIGHUP never ends the process.
fn spawn_reloader(state: web::Data<AppState>, runtime: &tokio::runtime::Handle) {
    use tokio::signal::unix::{SignalKind, signal};
    let _entered = runtime.enter();
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; the configuration is reloaded from /admin only");
            return;
        }
    };
    runtime.spawn(async move {
        while hangups.recv().await.is_some() {
            if let Err(e) = state.reloader.reload(&state).await {
                tracing::warn!(error = %e, "SIGHUP: reload refused; nothing was changed");
            }
        }
    });
}

/// Runs the server on `config`; `read` reads the configuration again and `set_log_level` sets
/// the log filter, for reloads.
pub fn serve(config: Config, read: ReadConfig, set_log_level: SetLogLevel) -> Result<(), ServeError> {
    limit_allocator_arenas();
    // Upstream fetches and single-flight work run here, apart from the HTTP workers, so a slow
    // upstream never occupies a worker and a departing client never cancels a shared fetch.
    let background = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("pkgmirror-bg")
        .enable_all()
        .build()
        .map_err(|e| ServeError::Startup(format!("background runtime: {e}")))?;
    let certificate = match config.server.tls_files() {
        Ok(Some((cert, key))) => {
            Some(http::tls::ServerCertificate::load(cert, key).map_err(ServeError::Startup)?)
        }
        Ok(None) => None,
        Err((key, reason)) => return Err(ServeError::Startup(format!("{key}: {reason}"))),
    };
    let tls = certificate
        .as_ref()
        .map(http::tls::ServerCertificate::server_config)
        .transpose()
        .map_err(ServeError::Startup)?;
    let reloader = Reloader::new(read, set_log_level, certificate, config.clone());
    let Parts {
        catalogue,
        state,
        lock,
    } = open(&config, background.handle().clone(), reloader)?;
    let max_connections = config.limits.max_connections;
    let listen = http::listener::Addresses {
        main: config.server.listen,
        metrics: config.metrics.listen,
    };
    spawn_access_flusher(state.clone(), background.handle());
    spawn_evictor(state.clone(), background.handle());
    spawn_limit_cleaner(state.clone(), background.handle());
    spawn_prober(state.clone(), background.handle());
    spawn_historian(state.clone(), background.handle());
    spawn_reloader(state.clone(), background.handle());
    let final_state = state.clone();

    let result = actix_web::rt::System::new().block_on(async move {
        let connections = http::listener::ConnectionLimits {
            max_connections,
            request_head: REQUEST_HEAD_TIMEOUT,
            disconnect: DISCONNECT_TIMEOUT,
            shutdown_grace: SHUTDOWN_GRACE,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let warm_runs = state.warm.clone();
        let (server, bound) = http::listener::bind(listen, state, connections, tls)
            .map_err(|(addr, source)| ServeError::Bind { addr, source })?;
        warm_runs.set_own_address(bound.main, scheme == "https");
        tracing::info!(
            "pkgmirror {} listening on {scheme}://{}",
            env!("CARGO_PKG_VERSION"),
            bound.main
        );
        if let Some(metrics) = bound.metrics {
            tracing::info!("metrics on http://{metrics}/metrics");
        }
        // Returns once a signal arrived and in-flight requests finished (or the grace ran out).
        server
            .await
            .map_err(|e| ServeError::Startup(format!("server: {e}")))?;
        Ok(catalogue)
    });
    let catalogue = result?;
    tracing::info!("shutting down: flushing state");
    if let Err(e) = background.block_on(final_state.downloads.flush_accesses()) {
        tracing::warn!(error = %e, "could not record the last blob accesses");
    }
    if let Err(e) = catalogue.checkpoint() {
        tracing::warn!(error = %e, "catalogue checkpoint failed; the WAL will be replayed on next start");
    }
    background.shutdown_timeout(Duration::from_secs(5));
    drop(lock);
    tracing::info!("stopped");
    Ok(())
}

fn open(
    config: &Config,
    background: tokio::runtime::Handle,
    reloader: Reloader,
) -> Result<Parts, ServeError> {
    let data_dir = &config.storage.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|source| ServeError::DataDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    // Before anything is opened: the blob store's start-up cleanup would delete the spools of
    // another server's downloads.
    let lock = DataDirLock::acquire(data_dir, "serve").map_err(|e| match e {
        held @ LockError::Held { .. } => ServeError::InUse(held),
        other => ServeError::Startup(other.to_string()),
    })?;
    let storage_error = |file: &str| {
        let path = data_dir.join(file).display().to_string();
        move |source| ServeError::Storage { path, source }
    };
    let catalogue = Catalogue::open(&data_dir.join(data_dir::CATALOGUE_FILE))
        .map_err(storage_error(data_dir::CATALOGUE_FILE))?;
    let page_store = PageStore::open(
        &data_dir.join(data_dir::PAGES_FILE),
        &data_dir.join(data_dir::PAGE_BODIES_DIR),
    )
    .map_err(storage_error(data_dir::PAGES_FILE))?;

    let mut indexes = Vec::new();
    for index in config.pypi.indexes() {
        let id = catalogue
            .ensure_index(Ecosystem::Pypi, &index.urls.cache_key(), index.ttl.as_secs())
            .map_err(storage_error(data_dir::CATALOGUE_FILE))?;
        tracing::info!(index = %index.urls.redacted(), ttl = %humantime::format_duration(index.ttl), "upstream index");
        indexes.push(Index::new(index, id));
    }
    if indexes.is_empty() {
        tracing::warn!("no upstream configured (pypi.index_url is empty): serving only what is cached");
    }

    let blob_dir = data_dir.join(data_dir::BLOBS_DIR);
    let configured = background
        .block_on(ConfiguredStore::open(
            &config.storage,
            &blob_dir,
            || catalogue.blob_last_access().unwrap_or_default(),
            background.clone(),
        ))
        .map_err(|e| {
            ServeError::Startup(format!(
                "cannot open the {} blob store (local part in {}): {e}",
                config.storage.backend.as_str(),
                blob_dir.display()
            ))
        })?;
    let store = configured.store();
    if let Some(s3) = configured.s3() {
        tracing::info!(location = %s3.location(), backend = config.storage.backend.as_str(), "blobs stored in S3");
    }
    // Only a local store is reconciled and kept within `storage.max_size` by the catalogue: a
    // bucket may be shared with other nodes and is authoritative, and a tiered store keeps its
    // local tier within the budget itself.
    let evictor = match &configured {
        ConfiguredStore::Local(_) => {
            // Before serving, so every blob served has a row (for eviction) and no row points nowhere.
            let report = background
                .block_on(maintenance::reconcile(store.as_ref(), &catalogue))
                .map_err(|e| {
                    ServeError::Startup(format!(
                        "cannot reconcile the blob store in {} with the catalogue: {e}",
                        blob_dir.display()
                    ))
                })?;
            tracing::info!(
                blobs = report.blobs,
                adopted = report.adopted,
                removed = report.removed,
                rows_dropped = report.rows_dropped,
                "blob store reconciled with the catalogue"
            );
            Some(Evictor::new(
                Arc::clone(&store),
                catalogue.clone(),
                config.storage.max_size,
            ))
        }
        ConfiguredStore::S3(_) | ConfiguredStore::Tiered(_) => None,
    };

    let http_error = |e: reqwest::Error| ServeError::Startup(format!("HTTP client: {e}"));
    let gates = crate::upstream::HostGates::new(config.limits.upstream_concurrency);
    let client = SimpleClient::new(&config.pypi, Arc::clone(&gates)).map_err(http_error)?;
    let file_client = FileClient::new(&config.pypi, Arc::clone(&gates)).map_err(http_error)?;
    let counters = Arc::new(CacheCounters::default());
    let page_cache = PageCacheSettings {
        l1_bytes: config.storage.page_cache_size,
        refresh_wait: config.pypi.refresh_wait,
        refresh_ahead: config.pypi.refresh_ahead,
    };
    let records = background
        .block_on(crate::storage::records::open(&config.storage))
        .map_err(|e| {
            ServeError::Startup(format!(
                "cannot open the record store (tokens, hosted packages): {e}"
            ))
        })?;
    let mut hosted_indexes = Vec::new();
    for hosted in &config.pypi.hosted {
        let id = catalogue
            .ensure_index(Ecosystem::Pypi, &HostedIndex::catalogue_url(&hosted.name), 0)
            .map_err(storage_error(data_dir::CATALOGUE_FILE))?;
        tracing::info!(index = %hosted.name, "hosted index");
        hosted_indexes.push(HostedIndex {
            name: hosted.name.clone(),
            id,
        });
    }
    let hosted = Arc::new(HostedPypi::new(
        hosted_indexes,
        Arc::clone(&records),
        Ingest::new(Arc::clone(&store), catalogue.clone(), Arc::clone(&counters)),
        catalogue.clone(),
        config.pypi.max_upload_size,
    ));
    // The file's [policy] with the rules added in /admin.
    let stored_rules = catalogue
        .policy_rules()
        .map_err(storage_error(data_dir::CATALOGUE_FILE))?;
    let policy = Arc::new(SharedPolicy::new(compose(&config.policy, &stored_rules)));
    let pages = Arc::new(SimplePages::new(
        PypiIndexes {
            upstreams: indexes,
            hosted: Arc::clone(&hosted),
            strategy: config.pypi.extra_index_strategy,
            only_from: config.pypi.only_from.clone(),
            policy: Arc::clone(&policy),
            public_url: config.server.public_url.clone(),
        },
        client,
        page_store.clone(),
        catalogue.clone(),
        page_cache,
        Arc::clone(&counters),
        background.clone(),
    ));
    let downloads = Arc::new(Downloads::new(
        catalogue.clone(),
        Arc::clone(&store),
        file_client,
        Arc::clone(&counters),
        background.clone(),
    ));
    let files = Arc::new(PypiFiles::new(
        Arc::clone(&pages),
        catalogue.clone(),
        Arc::clone(&downloads),
        Arc::clone(&counters),
        Arc::clone(&policy),
    ));
    let hex = if config.hex.enabled {
        let key = HexPublicKey::from_config(&config.hex.public_key)
            .map_err(|e| ServeError::Startup(format!("hex.public_key: {e}")))?;
        let resign_key = match config.hex.resign_key.expose().trim() {
            "" => None,
            pem => Some(HexSigningKey::from_pem(pem).map_err(ServeError::Startup)?),
        };
        let upstream = &config.hex.upstream_url;
        let index_id = catalogue
            .ensure_index(Ecosystem::Hex, &upstream.cache_key(), config.hex.ttl.as_secs())
            .map_err(storage_error(data_dir::CATALOGUE_FILE))?;
        tracing::info!(upstream = %upstream.redacted(), ttl = %humantime::format_duration(config.hex.ttl), "hex repository");
        Some(HexMirror::new(
            HexSettings {
                client: HexClient::new(&config.pypi, upstream.clone(), Arc::clone(&gates))
                    .map_err(http_error)?,
                verifier: RegistryVerifier::new(key),
                ttl: config.hex.ttl,
                index_id,
                cache: page_cache,
                policy: Arc::clone(&policy),
                resign: resign_key,
            },
            page_store.clone(),
            catalogue.clone(),
            Arc::clone(&downloads),
            Arc::clone(&counters),
            background.clone(),
        ))
    } else {
        None
    };
    let mut hex_repositories = Vec::new();
    for hosted in &config.hex.hosted {
        let what = format!(
            "hex.hosted {:?}: signing_key {}",
            hosted.name,
            hosted.signing_key.display()
        );
        let pem = std::fs::read_to_string(&hosted.signing_key)
            .map_err(|e| ServeError::Startup(format!("{what}: {e}")))?;
        let key = HexSigningKey::from_pem(&pem).map_err(|e| ServeError::Startup(format!("{what}: {e}")))?;
        tracing::info!(repository = %hosted.name, fallback = hosted.fallback, "hosted hex repository");
        hex_repositories.push(HexRepository::new(hosted.name.clone(), key, hosted.fallback));
    }
    let hex_hosted = Arc::new(HostedHex::new(
        hex_repositories,
        Arc::clone(&records),
        Arc::clone(&downloads),
        catalogue.clone(),
    ));
    crate::web::check_templates().map_err(ServeError::Startup)?;
    let policy = PolicyRules::new(
        policy,
        config.policy.clone(),
        catalogue.clone(),
        Arc::clone(&pages),
    );
    let state = web::Data::new(AppState {
        pages,
        files,
        downloads,
        hex,
        evictor,
        counters,
        explorer: Explorer::new(catalogue.clone()),
        ui: crate::web::Ui::default(),
        admin: crate::auth::AdminAuth::new(config.server.admin_token.clone()),
        hosted,
        hex_hosted,
        policy,
        tokens: crate::auth::tokens::TokenGate::new(crate::auth::tokens::Tokens::new(records)),
        anonymous_read: config.server.anonymous_read,
        trusted_proxies: config.server.trusted_proxies.clone(),
        request_body_timeout: config.server.request_body_timeout,
        access_hits: http::HitSampler::new(config.log.access_hit_sample),
        public_url: config.server.public_url.clone(),
        limits: crate::live::Live::new(http::ClientLimits::new(&config.limits)),
        metrics_token: crate::live::Live::new(config.metrics.token.clone()),
        history: crate::metrics::History::default(),
        reloader,
        warm: Arc::default(),
        started: Instant::now(),
    });
    Ok(Parts {
        catalogue,
        state,
        lock,
    })
}
