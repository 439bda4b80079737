//! Typed settings of pkgmirror and how they are loaded.
//!
//! Layers, later wins: built-in defaults < TOML file < proxpi variables <
//! `PKGMIRROR__SECTION__KEY` variables < command-line flags. This is the only
//! module of the program that reads environment variables, so everything
//! else can be tested with plain values.
//!
//! One file per section (`server`, `storage`, `pypi`, `hex`, `log`, `policy`, `metrics`, `limits`) holds its
//! keys and their defaults; `values` the value types and forms the sections
//! share (secrets, upstream URLs, durations, sizes); `layers` the loading and
//! the checks that span keys; `show` what `config show` prints.

mod hex;
mod layers;
mod limits;
mod log;
mod metrics;
mod policy;
mod pypi;
mod server;
mod show;
mod storage;
#[cfg(test)]
mod test_support;
mod values;

use serde::Deserialize;

pub use hex::{HexConfig, HexHostedConfig};
pub use layers::{CliOverrides, ConfigError, Loaded, Source, load, load_from};
pub use limits::LimitsConfig;
pub use log::{LogConfig, LogFormat};
pub use metrics::MetricsConfig;
pub use policy::{PolicyConfig, PolicyRule, RuleAction, UnknownUploadTime};
pub use pypi::{ExtraIndexStrategy, HostedIndexConfig, IndexConfig, OnlyFrom, PypiConfig, valid_index_name};
pub use server::{IpRange, ServerConfig};
pub use show::{changed_keys, render_sources, render_toml};
pub use storage::{S3Config, StorageBackend, StorageConfig};
pub use values::{NamePattern, Secret, UpstreamUrl, UpstreamUrls};

/// The whole configuration; `Default` is the built-in defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub pypi: PypiConfig,
    pub hex: HexConfig,
    pub log: LogConfig,
    pub policy: PolicyConfig,
    pub metrics: MetricsConfig,
    pub limits: LimitsConfig,
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::show::leaves;
    use super::test_support::{load_ok, none};
    use super::values::{GIB, MIB};
    use super::*;

    #[test]
    fn defaults() {
        let loaded = load_ok(&[], &none());
        let c = &loaded.config;
        assert_eq!(c.server.listen, "127.0.0.1:5000".parse().unwrap());
        assert!(c.server.admin_token.is_empty());
        assert_eq!(c.server.public_url, None);
        assert_eq!(c.storage.data_dir, PathBuf::from("./pkgmirror-data"));
        assert_eq!(c.storage.backend, StorageBackend::Local);
        assert_eq!(c.storage.max_size, 20 * GIB);
        assert_eq!(c.storage.page_cache_size, 256 * MIB);
        assert_eq!(c.storage.s3.region, "us-east-1");
        assert!(!c.storage.s3.path_style);
        assert_eq!(c.storage.s3.part_size, 16 * MIB);
        assert_eq!(c.pypi.index_url, None);
        assert_eq!(c.pypi.index_ttl, Duration::from_secs(1800));
        assert!(c.pypi.extra_index_urls.is_empty());
        assert!(c.pypi.verify_tls);
        assert!(!c.pypi.allow_private_upstreams);
        assert_eq!(c.pypi.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.pypi.read_timeout, Duration::from_secs(30));
        assert_eq!(c.pypi.page_timeout, Duration::from_secs(60));
        assert_eq!(c.pypi.refresh_wait, Duration::from_secs(2));
        assert_eq!(c.pypi.max_page_size, 64 << 20);
        assert_eq!(c.pypi.download_timeout, Duration::ZERO);
        assert!(c.pypi.indexes().is_empty());
        assert!(c.hex.enabled);
        assert_eq!(
            c.hex.upstream_url.primary().url().as_str(),
            "https://repo.hex.pm/"
        );
        assert_eq!(c.hex.ttl, Duration::from_secs(1800));
        assert_eq!(c.log.format, LogFormat::Text);
        assert_eq!(c.log.level, "info");
        assert!(loaded.sources.values().all(|s| *s == Source::Default));
        assert_eq!(loaded.sources.len(), leaves(c).len());
    }
}
