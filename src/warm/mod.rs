//! `pkgmirror warm`: ask a running server for everything lock files name, so its cache holds it.

pub mod lockfile;
