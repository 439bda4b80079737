//! What every handler, tool-facing (`http/`) or browser-facing (`web/`), can reach.

use std::sync::Arc;
use std::time::Instant;

use actix_web::HttpRequest;
use url::Url;

use crate::auth::AdminAuth;
use crate::auth::tokens::{Denial, Scope, TokenGate, TokenRecord};
use crate::cache::CacheCounters;
use crate::cache::downloads::Downloads;
use crate::cache::explorer::Explorer;
use crate::cache::files::PypiFiles;
use crate::cache::hex::HexMirror;
use crate::cache::hex_hosted::HostedHex;
use crate::cache::hosted::HostedPypi;
use crate::cache::maintenance::Evictor;
use crate::cache::simple::SimplePages;
use crate::cache::unix_now;
use crate::config::IpRange;
use crate::error::AppError;
use crate::storage::browse::AdminLogEntry;
use crate::upstream::IndexHealthReport;

/// What every handler can reach.
pub struct AppState {
    pub pages: Arc<SimplePages>,
    pub files: Arc<PypiFiles>,
    pub downloads: Arc<Downloads>,
    /// `None` when `hex.enabled` is false.
    pub hex: Option<HexMirror>,
    /// Keeps a local store within `storage.max_size`; `None` for S3 and tiered stores.
    pub evictor: Option<Evictor>,
    pub counters: Arc<CacheCounters>,
    /// The catalogue as the web UI browses it, and the admin log.
    pub explorer: Explorer,
    /// Admin sessions.
    pub ui: crate::web::Ui,
    /// The admin token and the failed-attempt limit of every admin entry point.
    pub admin: AdminAuth,
    /// The hosted PyPI indexes (`pypi.hosted`).
    pub hosted: Arc<HostedPypi>,
    /// The hosted hex repositories (`hex.hosted`).
    pub hex_hosted: Arc<HostedHex>,
    /// The release policy: the file's and the rules added in `/admin`.
    pub policy: crate::cache::policy::PolicyRules,
    /// Access tokens, and the limit on wrong ones.
    pub tokens: TokenGate,
    /// `server.anonymous_read`.
    pub anonymous_read: bool,
    /// `server.trusted_proxies`: whose forwarded client addresses are believed.
    pub trusted_proxies: Vec<IpRange>,
    /// `server.request_body_timeout`.
    pub request_body_timeout: std::time::Duration,
    /// Which cache hits the access log writes (`log.access_hit_sample`).
    pub access_hits: crate::http::HitSampler,
    pub public_url: Option<Url>,
    /// `[limits]` on clients, replaced whole on reload.
    pub limits: crate::live::Live<crate::http::ClientLimits>,
    /// `metrics.token`: opens `/metrics` on the main port.
    pub metrics_token: crate::live::Live<crate::config::Secret>,
    /// Readings of the counters for the home page's charts.
    pub history: crate::metrics::History,
    /// Applies a changed configuration (SIGHUP, `/admin`).
    pub reloader: crate::reload::Reloader,
    /// Warm runs started from `/admin`.
    pub warm: Arc<crate::warm::runs::Runs>,
    pub started: Instant,
}

/// One upstream as `/health` and the home page show it.
pub struct UpstreamStatus {
    /// The index's name (`pypi.index_name`, an extra's name), or `hex`.
    pub name: String,
    /// Redacted URL.
    pub url: String,
    /// `main` or `extra` (PyPI indexes, in configured order), or `hex`.
    pub role: &'static str,
    pub report: IndexHealthReport,
    /// Its pool's members (one for an upstream with one URL).
    pub members: Vec<crate::upstream::MemberReport>,
}

/// The server's health at one moment: what `/health` and the home page both show.
pub struct StatusSnapshot {
    /// Whether a PyPI upstream is configured at all.
    pub upstream_configured: bool,
    pub upstreams: Vec<UpstreamStatus>,
    /// The blob store's kind and whether it works.
    pub storage_backend: &'static str,
    pub storage: Result<(), String>,
}

impl StatusSnapshot {
    /// Degraded still serves (cached pages go out, stale if need be): an upstream or the blob
    /// store is failing.
    pub fn degraded(&self) -> bool {
        self.storage.is_err() || self.upstreams.iter().any(|u| u.report.state.is_failing())
    }

    pub fn status(&self) -> &'static str {
        if self.degraded() { "degraded" } else { "ok" }
    }
}

impl AppState {
    /// The request's client ([`crate::auth::client_addr`]).
    pub fn client(&self, req: &HttpRequest) -> Option<std::net::IpAddr> {
        crate::auth::client_addr(req, &self.trusted_proxies)
    }

    /// The token `req` carries, if it grants `wanted`; otherwise the answer to give. A wrong
    /// token, and the first refusal of a client over its limit, go to the admin log.
    pub async fn require_token(
        &self,
        req: &HttpRequest,
        wanted: &Scope,
    ) -> Result<Arc<TokenRecord>, AppError> {
        let client = self.client(req);
        let presented = crate::auth::presented_token(req);
        let admitted = self
            .tokens
            .admit(client, presented.as_deref(), wanted, unix_now())
            .await
            .map_err(|e| AppError::Unavailable(format!("cannot check the access token: {e}")))?;
        let actor = crate::auth::describe(client);
        match admitted {
            Ok(record) => Ok(record),
            Err(Denial::NoToken) => Err(AppError::TokenRequired(
                "this mirror needs an access token: send it as the password of HTTP Basic auth \
                 (any user name) or as a Bearer token"
                    .into(),
            )),
            Err(Denial::WrongToken) => {
                self.record_admin_action(&actor, "token-failed", Some(req.path()), "not an active token")
                    .await;
                Err(AppError::TokenRequired(
                    "the access token is not valid: unknown, expired or revoked".into(),
                ))
            }
            Err(Denial::NotAllowed { name }) => Err(AppError::Forbidden(format!(
                "the token {name:?} does not grant {wanted}"
            ))),
            Err(Denial::Limited { retry_after, first }) => {
                if first {
                    self.record_admin_action(&actor, "token-failed", Some(req.path()), "rate limited")
                        .await;
                }
                Err(AppError::TooManyRequests(
                    format!("too many wrong access tokens from {actor}: try again in {retry_after} s"),
                    retry_after,
                ))
            }
        }
    }

    /// Writes an admin action (or a failed attempt at one) to the admin log, and to the log.
    pub async fn record_admin_action(&self, actor: &str, action: &str, target: Option<&str>, outcome: &str) {
        let entry = AdminLogEntry {
            at: unix_now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.map(str::to_owned),
            outcome: outcome.to_owned(),
        };
        tracing::info!(actor, action, target, outcome, "admin action");
        if let Err(e) = self.explorer.record_admin_action(entry).await {
            tracing::warn!(error = %e, action, "could not record an admin action in the admin log");
        }
    }

    /// A reading of the counters now, for the home page's history.
    pub fn reading(&self) -> crate::metrics::Reading {
        let counters = self.counters.snapshot();
        crate::metrics::METRICS.reading(unix_now(), counters.hits, counters.misses)
    }

    pub async fn status(&self) -> StatusSnapshot {
        let pypi = self.pages.health_reports();
        let upstream_configured = !pypi.is_empty();
        let mut upstreams: Vec<UpstreamStatus> = pypi
            .into_iter()
            .enumerate()
            .map(|(i, (name, url, report, members))| UpstreamStatus {
                name,
                url,
                role: if i == 0 { "main" } else { "extra" },
                report,
                members,
            })
            .collect();
        if let Some(hex) = &self.hex {
            let (url, report, members) = hex.health_report();
            upstreams.push(UpstreamStatus {
                name: "hex".to_owned(),
                url,
                role: "hex",
                report,
                members,
            });
        }
        let (storage_backend, storage) = self.downloads.storage_health().await;
        StatusSnapshot {
            upstream_configured,
            upstreams,
            storage_backend,
            storage,
        }
    }
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
