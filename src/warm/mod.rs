//! `pkgmirror warm`: ask a running server for everything lock files name, so its cache holds it.
//!
//! The warmer is a client of the server's own routes (pages, files, PEP 658 metadata, PEP 740
//! provenance, hex registry files and tarballs): the server's single-flight, verification and
//! storage apply, and nothing else touches its data dir. What it asks is checked as a client
//! would: every hash a lock file records against the index's, every body against its sha256.

pub mod lockfile;
mod run;
pub mod runs;
pub mod select;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

pub use run::{WarmError, Warmer};
pub use select::Filters;

/// How far a run is, shared with whoever draws it (the progress bar, the admin page).
#[derive(Debug, Default)]
pub struct Progress {
    pages_total: AtomicU64,
    pages_done: AtomicU64,
    files_total: AtomicU64,
    files_done: AtomicU64,
    bytes_total: AtomicU64,
    bytes_done: AtomicU64,
    failures: AtomicU64,
}

/// A reading of [`Progress`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProgressReading {
    pub pages_total: u64,
    pub pages_done: u64,
    pub files_total: u64,
    pub files_done: u64,
    /// The sizes the index gave of the files to fetch (a file without one adds nothing).
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub failures: u64,
}

impl Progress {
    pub fn read(&self) -> ProgressReading {
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        ProgressReading {
            pages_total: get(&self.pages_total),
            pages_done: get(&self.pages_done),
            files_total: get(&self.files_total),
            files_done: get(&self.files_done),
            bytes_total: get(&self.bytes_total),
            bytes_done: get(&self.bytes_done),
            failures: get(&self.failures),
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub pages: u64,
    pub files: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Entries the lock files name that a mirror cannot serve, and why.
    pub skipped: Vec<String>,
    /// Every failure, naming the lock file that asked.
    pub failures: Vec<String>,
}

impl Report {
    /// The plain summary printed at the end (and where no terminal shows a progress bar).
    pub fn summary(&self) -> String {
        let mut out = format!(
            "warmed {} pages and {} files ({}, {}/s) in {:.1} s; {} skipped, {} failed\n",
            self.pages,
            self.files,
            bytesize::ByteSize(self.bytes).display().iec(),
            bytesize::ByteSize((self.bytes as f64 / self.seconds.max(0.001)) as u64)
                .display()
                .iec(),
            self.seconds,
            self.skipped.len(),
            self.failures.len(),
        );
        for line in &self.skipped {
            out.push_str(&format!("skipped: {line}\n"));
        }
        for line in &self.failures {
            out.push_str(&format!("error: {line}\n"));
        }
        out
    }
}

/// How a client on this machine reaches a server listening on `listen`: the wildcard address is
/// reached through loopback.
pub fn reachable(mut listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() {
        listen.set_ip(match listen {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    listen
}
