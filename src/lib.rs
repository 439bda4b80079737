//! pkgmirror: a persistent package mirror for PyPI's Simple API and the hex repository.
//!
//! See `docs/ARCHITECTURE.md` for the map: `http/` is thin and reaches upstreams and storage only
//! through `cache/`; `pypi/` is protocol logic without I/O; `web/` renders the browser UI on top of
//! the same flows.

pub mod app;
pub mod auth;
pub mod breaker;
pub mod cache;
pub mod cli;
pub mod config;
pub mod ecosystem;
pub mod error;
#[cfg(test)]
mod fuzz_support;
pub mod hex;
pub mod http;
pub mod live;
pub mod metrics;
pub mod policy;
pub mod pypi;
pub mod reload;
pub mod routes;
pub mod state;
pub mod storage;
pub mod upstream;
pub mod warm;
pub mod web;
