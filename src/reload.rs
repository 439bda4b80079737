//! Reloading the configuration without a restart (`SIGHUP`, or `reload` in `/admin`): the keys
//! that can change live are applied, the others are reported and left as they were, and a file
//! that does not load changes nothing. Connections and requests under way are untouched: each
//! value a request reads is swapped whole ([`crate::live::Live`]), and a request keeps the one it
//! took.

use std::sync::{Arc, Mutex, PoisonError};

use crate::config::{Config, changed_keys};
use crate::http::tls::ServerCertificate;
use crate::state::AppState;

/// The keys a reload applies; `section.*` stands for every key of the section.
const LIVE_KEYS: &[&str] = &[
    "server.admin_token",
    "server.tls_cert",
    "server.tls_key",
    "log.level",
    "metrics.token",
    "limits.requests_per_second",
    "limits.burst",
    "limits.downloads_per_client",
    "limits.max_header_size",
    "policy.*",
    "pypi.index_url",
    "pypi.extra_index_urls",
    "pypi.index_ttl",
    "pypi.extra_index_ttls",
    "hex.upstream_url",
    "hex.ttl",
];

/// The live keys that change the PyPI upstreams: live only while the same indexes stay.
const PYPI_UPSTREAM_KEYS: &[&str] = &[
    "pypi.index_url",
    "pypi.extra_index_urls",
    "pypi.index_ttl",
    "pypi.extra_index_ttls",
];

fn is_live(key: &str) -> bool {
    LIVE_KEYS.iter().any(|live| match live.strip_suffix('*') {
        Some(section) => key.starts_with(section),
        None => key == *live,
    })
}

/// Reads the configuration again: the same file, environment and flags as at start.
pub type ReadConfig = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;
/// Puts a `log.level` filter in force.
pub type SetLogLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

pub struct Reloader {
    read: ReadConfig,
    set_log_level: SetLogLevel,
    certificate: Option<Arc<ServerCertificate>>,
    /// The configuration the process started with: what needs a restart is compared with it.
    started: Config,
    /// The configuration whose live keys are in force.
    in_force: Mutex<Config>,
    /// One reload at a time.
    running: tokio::sync::Mutex<()>,
}

/// What one reload did.
#[derive(Debug, Default)]
pub struct ReloadReport {
    /// Live keys whose new values are now in force.
    pub applied: Vec<String>,
    /// Keys whose new values wait for a restart.
    pub need_restart: Vec<String>,
}

impl ReloadReport {
    pub fn summary(&self) -> String {
        let list = |keys: &[String]| {
            if keys.is_empty() {
                "none".to_owned()
            } else {
                keys.join(", ")
            }
        };
        format!(
            "applied: {}; needs a restart: {}",
            list(&self.applied),
            list(&self.need_restart)
        )
    }
}

impl Reloader {
    pub fn new(
        read: ReadConfig,
        set_log_level: SetLogLevel,
        certificate: Option<Arc<ServerCertificate>>,
        started: Config,
    ) -> Self {
        Self {
            read,
            set_log_level,
            certificate,
            in_force: Mutex::new(started.clone()),
            started,
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Reads the configuration and applies what can change live. Everything that can fail to
    /// load (the file, the certificate) is loaded before anything is applied, so an error
    /// changes nothing.
    pub async fn reload(&self, state: &AppState) -> Result<ReloadReport, String> {
        let _one = self.running.lock().await;
        let config = (self.read)()?;
        let certificate = match (&self.certificate, config.server.tls_files()) {
            (Some(current), Ok(Some((cert, key)))) => Some((current, current.prepare(cert, key)?)),
            _ => None,
        };

        // Another set of indexes (added, removed, renamed) needs a restart; other upstream
        // changes (URLs, pool members, TTLs) are live.
        let upstreams_live = state.pages.can_replace_upstreams(&config.pypi);
        if let Err(why) = &upstreams_live {
            tracing::warn!(reason = %why, "reload: the PyPI upstreams are left as they are");
        }
        let live = |key: &String| {
            is_live(key) && (upstreams_live.is_ok() || !PYPI_UPSTREAM_KEYS.contains(&key.as_str()))
        };

        let in_force = self
            .in_force
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let applied: Vec<String> = changed_keys(&in_force, &config)
            .into_iter()
            .filter(live)
            .collect();
        let need_restart: Vec<String> = changed_keys(&self.started, &config)
            .into_iter()
            .filter(|key| !live(key))
            .collect();

        state.admin.set_token(config.server.admin_token.clone());
        state.metrics_token.replace(config.metrics.token.clone());
        if applied.iter().any(|key| key.starts_with("limits.")) {
            // New limits start every client afresh; unchanged ones keep their state.
            state
                .limits
                .replace(crate::http::ClientLimits::new(&config.limits));
        }
        (self.set_log_level)(&config.log.level)?;
        if let Some((current, loaded)) = certificate {
            current.install(loaded);
            tracing::info!("TLS certificate reloaded");
        }
        if upstreams_live.is_ok() {
            state.pages.replace_upstreams(&config.pypi);
        }
        if let Some(hex) = &state.hex {
            hex.replace_upstream(&config.hex);
        }
        if applied.iter().any(|key| key.starts_with("policy.")) {
            state
                .policy
                .reload(config.policy.clone())
                .await
                .map_err(|e| format!("the policy could not be put in force: {e}"))?;
        }
        *self.in_force.lock().unwrap_or_else(PoisonError::into_inner) = config;
        let report = ReloadReport {
            applied,
            need_restart,
        };
        if report.need_restart.is_empty() {
            tracing::info!(applied = ?report.applied, "configuration reloaded");
        } else {
            tracing::warn!(
                applied = ?report.applied,
                need_restart = ?report.need_restart,
                "configuration reloaded; some changes need a restart and were left as they were"
            );
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_keys_are_told_from_those_that_need_a_restart() {
        assert!(is_live("policy.rules"));
        assert!(is_live("limits.burst"));
        assert!(is_live("pypi.index_url"));
        assert!(!is_live("pypi.extra_index_names"));
        assert!(!is_live("server.listen"));
        assert!(!is_live("storage.backend"));
        assert!(!is_live("limits.upstream_concurrency"));
        assert!(!is_live("metrics.listen"));
    }

    #[test]
    fn a_changed_config_names_its_keys() {
        let a = Config::default();
        let mut b = Config::default();
        b.server.listen = "127.0.0.1:1".parse().unwrap();
        b.limits.burst = 5;
        b.server.admin_token = crate::config::Secret::from("new".to_owned());
        let changed = changed_keys(&a, &b);
        assert_eq!(changed, ["server.listen", "server.admin_token", "limits.burst"]);
    }
}
