//! `[server]`: the listening address, the admin token and the public URL.

use std::net::SocketAddr;

use serde::Deserialize;
use serde::de::{self, Deserializer};
use url::Url;

use super::values::{Secret, has_credentials, parse_http_url, redact_raw_url};

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// Empty: admin endpoints answer only requests from loopback.
    pub admin_token: Secret,
    /// External base URL for links behind a reverse proxy; ends with `/`.
    #[serde(deserialize_with = "public_url")]
    pub public_url: Option<Url>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            admin_token: Secret::default(),
            public_url: None,
        }
    }
}

fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    s.trim().parse().map_err(|_| {
        de::Error::custom(format!(
            "invalid socket address {s:?} (expected e.g. \"127.0.0.1:5000\" or \"[::]:5000\")"
        ))
    })
}

/// Empty string: `None`. Credentials are refused: this URL goes into links
/// that clients see.
fn public_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Ok(None);
    }
    let url = parse_http_url(&s).map_err(de::Error::custom)?;
    if has_credentials(&url) {
        return Err(de::Error::custom(format!(
            "must not contain credentials ({:?})",
            redact_raw_url(&s)
        )));
    }
    Ok(Some(url))
}
