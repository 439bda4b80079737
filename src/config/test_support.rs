//! Helpers shared by the tests of the config files: loading from a given
//! environment and flags, and temporary config files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::layers::load_with_default_file;
use super::{CliOverrides, ConfigError, Loaded, UpstreamUrl, UpstreamUrls};

/// The implicit `./pkgmirror.toml` is replaced by a path that does not
/// exist, so tests do not depend on the working directory.
const NO_DEFAULT_FILE: &str = "/nonexistent-pkgmirror-test/pkgmirror.toml";

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect()
}

fn load_env(pairs: &[(&str, &str)], overrides: &CliOverrides) -> Result<Loaded, ConfigError> {
    load_with_default_file(&env(pairs), overrides, Path::new(NO_DEFAULT_FILE))
}

pub(super) fn load_ok(pairs: &[(&str, &str)], overrides: &CliOverrides) -> Loaded {
    load_env(pairs, overrides).unwrap_or_else(|e| panic!("load failed: {e}"))
}

pub(super) fn load_err(pairs: &[(&str, &str)], overrides: &CliOverrides) -> String {
    match load_env(pairs, overrides) {
        Ok(loaded) => panic!("load succeeded: {:?}", loaded.config),
        Err(e) => e.to_string(),
    }
}

/// A temporary config file; the directory lives as long as the guard.
pub(super) fn toml_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pkgmirror.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

pub(super) fn with_file(path: &Path) -> CliOverrides {
    CliOverrides {
        config_file: Some(path.to_path_buf()),
        ..CliOverrides::default()
    }
}

pub(super) fn none() -> CliOverrides {
    CliOverrides::default()
}

pub(super) fn file_err(text: &str) -> String {
    let (_dir, path) = toml_file(text);
    load_err(&[], &with_file(&path))
}

pub(super) fn url(s: &str) -> UpstreamUrl {
    s.parse().unwrap()
}

/// An upstream of one or more (space-separated) URLs.
pub(super) fn urls(s: &str) -> UpstreamUrls {
    s.parse().unwrap()
}
