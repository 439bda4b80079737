//! `[limits]`: what one client may ask of the mirror, and what the mirror asks of an upstream.
//!
//! The defaults are sized for a CI farm behind one NAT address: a 429 fails a pip install (pip
//! does not retry it), so dozens of builds resolving at once from one address must pass; what
//! the limits stop is one runaway client taking the whole server.

use serde::Deserialize;

use super::values::size;

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Requests a second one client address may make, sustained (0: no limit). `/health` and
    /// `/metrics` are not counted.
    pub requests_per_second: u32,
    /// Requests one client may make at once above the sustained rate.
    pub burst: u32,
    /// File downloads (PyPI files, hex tarballs) one client may have under way at once (0: no
    /// limit).
    pub downloads_per_client: u32,
    /// Requests to one upstream host under way at once, bodies included (0: no limit); more wait
    /// their turn.
    pub upstream_concurrency: u32,
    /// Open client connections, all listeners together.
    pub max_connections: u32,
    /// The largest request head (request line and headers): a bigger one gets 431.
    #[serde(deserialize_with = "size")]
    pub max_header_size: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 10_000,
            burst: 50_000,
            downloads_per_client: 1024,
            upstream_concurrency: 128,
            max_connections: 10_000,
            max_header_size: 32 * 1024,
        }
    }
}
