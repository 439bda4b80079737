//! `[metrics]`: where `/metrics` is served, and the token that opens it on the main port.

use std::net::SocketAddr;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::values::Secret;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// An address of its own for `/metrics` (no token asked there: keep it on a network only
    /// the monitoring reaches). Empty: none.
    #[serde(deserialize_with = "optional_socket_addr")]
    pub listen: Option<SocketAddr>,
    /// Opens `/metrics` on the main port to a request carrying it (Bearer, or Basic's password).
    /// Empty: `/metrics` is not served on the main port.
    pub token: Secret,
}

fn optional_socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Ok(None);
    }
    s.trim().parse().map(Some).map_err(|_| {
        de::Error::custom(format!(
            "invalid socket address {s:?} (expected e.g. \"127.0.0.1:9464\", or empty for none)"
        ))
    })
}
