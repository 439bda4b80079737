//! Builds the application from its config, binds, and runs until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

use crate::cache::CacheCounters;
use crate::cache::files::{ACCESS_FLUSH_INTERVAL, FileCache};
use crate::cache::simple::{Index, SimplePages};
use crate::config::{Config, StorageBackend};
use crate::http::{self, AppState};
use crate::storage::blob::LocalBlobStore;
use crate::storage::{Catalogue, PageStore, StorageError};
use crate::upstream::{FileClient, IndexHealth, SimpleClient};

/// How long in-flight requests get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

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
    #[error("cannot start: {0}")]
    Startup(String),
}

/// Everything the server runs on, opened from the config.
struct Parts {
    catalogue: Catalogue,
    state: web::Data<AppState>,
}

/// Writes batched blob access times every few seconds, on the background runtime.
fn spawn_access_flusher(state: web::Data<AppState>, runtime: &tokio::runtime::Handle) {
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(ACCESS_FLUSH_INTERVAL);
        loop {
            tick.tick().await;
            if let Err(e) = state.files.flush_accesses().await {
                tracing::warn!(error = %e, "could not record blob accesses; will retry");
            }
        }
    });
}

pub fn serve(config: Config) -> Result<(), ServeError> {
    // Upstream fetches and single-flight work run here, apart from the HTTP workers, so a slow
    // upstream never occupies a worker and a departing client never cancels a shared fetch.
    let background = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("pkgmirror-bg")
        .enable_all()
        .build()
        .map_err(|e| ServeError::Startup(format!("background runtime: {e}")))?;
    let parts = open(&config, background.handle().clone())?;
    let listen = config.server.listen;
    spawn_access_flusher(parts.state.clone(), background.handle());
    let final_state = parts.state.clone();

    let result = actix_web::rt::System::new().block_on(async move {
        let state = parts.state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(from_fn(http::html_errors))
                .wrap(from_fn(http::access_log))
                .configure(http::configure)
        })
        .shutdown_timeout(SHUTDOWN_GRACE.as_secs())
        .bind(listen)
        .map_err(|source| ServeError::Bind { addr: listen, source })?;
        for addr in server.addrs() {
            tracing::info!(
                "pkgmirror {} listening on http://{addr}",
                env!("CARGO_PKG_VERSION")
            );
        }
        // Returns once a signal arrived and in-flight requests finished (or the grace ran out).
        server
            .run()
            .await
            .map_err(|e| ServeError::Startup(format!("server: {e}")))?;
        Ok(parts.catalogue)
    });
    let catalogue = result?;
    tracing::info!("shutting down: flushing state");
    if let Err(e) = background.block_on(final_state.files.flush_accesses()) {
        tracing::warn!(error = %e, "could not record the last blob accesses");
    }
    if let Err(e) = catalogue.checkpoint() {
        tracing::warn!(error = %e, "catalogue checkpoint failed; the WAL will be replayed on next start");
    }
    background.shutdown_timeout(Duration::from_secs(5));
    tracing::info!("stopped");
    Ok(())
}

fn open(config: &Config, background: tokio::runtime::Handle) -> Result<Parts, ServeError> {
    if config.storage.backend != StorageBackend::Local {
        return Err(ServeError::Startup(format!(
            "storage.backend = \"{}\" is not available in this version; use \"local\"",
            config.storage.backend.as_str()
        )));
    }
    let data_dir = &config.storage.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|source| ServeError::DataDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    let storage_error = |file: &str| {
        let path = data_dir.join(file).display().to_string();
        move |source| ServeError::Storage { path, source }
    };
    let catalogue =
        Catalogue::open(&data_dir.join("catalogue.sqlite3")).map_err(storage_error("catalogue.sqlite3"))?;
    let pages = PageStore::open(&data_dir.join("pages.redb")).map_err(storage_error("pages.redb"))?;

    let mut indexes = Vec::new();
    for index in config.pypi.indexes() {
        let id = catalogue
            .ensure_index("pypi", &index.url.cache_key(), index.ttl.as_secs())
            .map_err(storage_error("catalogue.sqlite3"))?;
        tracing::info!(index = %index.url.redacted(), ttl = %humantime::format_duration(index.ttl), "upstream index");
        indexes.push(Index {
            config: index,
            id,
            health: IndexHealth::default(),
        });
    }
    if indexes.is_empty() {
        tracing::warn!("no upstream configured (pypi.index_url is empty): serving only what is cached");
    }

    let blob_dir = data_dir.join("blobs");
    let store = LocalBlobStore::open(&blob_dir).map_err(|e| {
        ServeError::Startup(format!(
            "cannot open the blob store in {}: {e}",
            blob_dir.display()
        ))
    })?;

    let http_error = |e: reqwest::Error| ServeError::Startup(format!("HTTP client: {e}"));
    let client = SimpleClient::new(&config.pypi).map_err(http_error)?;
    let file_client = FileClient::new(&config.pypi).map_err(http_error)?;
    let counters = Arc::new(CacheCounters::default());
    let pages = Arc::new(SimplePages::new(
        indexes,
        client,
        pages,
        catalogue.clone(),
        config.storage.page_cache_size,
        Arc::clone(&counters),
        background.clone(),
    ));
    let files = FileCache::new(
        Arc::clone(&pages),
        catalogue.clone(),
        Arc::new(store),
        file_client,
        Arc::clone(&counters),
        background,
    );
    let state = web::Data::new(AppState {
        pages,
        files,
        counters,
        admin_token: config.server.admin_token.clone(),
        public_url: config.server.public_url.clone(),
        started: Instant::now(),
    });
    Ok(Parts { catalogue, state })
}
