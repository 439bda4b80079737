//! `[hex]`: the hex repository upstream, its TTL and the key its registry
//! files are signed with.

use std::time::Duration;

use serde::Deserialize;

use super::values::{Secret, UpstreamUrls, duration};

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HexConfig {
    pub enabled: bool,
    /// The hex repository: one URL, or a pool of equivalent ones.
    pub upstream_url: UpstreamUrls,
    #[serde(deserialize_with = "duration")]
    pub ttl: Duration,
    /// PEM; empty: the built-in hex.pm key.
    pub public_key: String,
    /// A PEM RSA private key: registry files go out without the releases the release policy
    /// holds back, signed with it. Empty: registry files pass through as the upstream signed them.
    pub resign_key: Secret,
}

impl Default for HexConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            upstream_url: "https://repo.hex.pm"
                .parse()
                .expect("the built-in hex URL is valid"),
            ttl: Duration::from_secs(30 * 60),
            public_key: String::new(),
            resign_key: Secret::default(),
        }
    }
}
