//! What every handler, tool-facing (`http/`) or browser-facing (`web/`), can reach.

use std::sync::Arc;
use std::time::Instant;

use actix_web::HttpRequest;
use url::Url;

use crate::cache::CacheCounters;
use crate::cache::explorer::Explorer;
use crate::cache::files::FileCache;
use crate::cache::hex::HexMirror;
use crate::cache::maintenance::Evictor;
use crate::cache::simple::SimplePages;
use crate::config::Secret;

/// What every handler can reach.
pub struct AppState {
    pub pages: Arc<SimplePages>,
    pub files: Arc<FileCache>,
    /// `None` when `hex.enabled` is false.
    pub hex: Option<HexMirror>,
    /// Keeps a local store within `storage.max_size`; `None` for S3 and tiered stores.
    pub evictor: Option<Evictor>,
    pub counters: Arc<CacheCounters>,
    /// The catalogue as the web UI browses it, and the admin log.
    pub explorer: Explorer,
    /// Admin sessions and the sign-in rate limit.
    pub ui: crate::web::Ui,
    pub admin_token: Secret,
    pub public_url: Option<Url>,
    pub started: Instant,
}

/// An absolute URL for `path` (which starts with `/`) as clients outside see it: under
/// `server.public_url` when set, else the request's own host.
pub(crate) fn external_url(state: &AppState, req: &HttpRequest, path: &str) -> String {
    match &state.public_url {
        Some(base) => format!("{}{}", base.as_str().trim_end_matches('/'), path),
        None => {
            let info = req.connection_info();
            format!("{}://{}{}", info.scheme(), info.host(), path)
        }
    }
}
