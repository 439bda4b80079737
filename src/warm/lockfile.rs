//! Lock files and requirements files, read into what `pkgmirror warm` asks the server for.
//!
//! Parsing is pure (`parse`); `read` adds the file system: it reads a file and, for a
//! requirements file, the files it includes with `-r`.

use std::path::Path;

/// The formats `warm` reads, told apart by file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `requirements*.txt` (and any `*.txt`, `*.in`): pip's requirements file, with or without `--hash`.
    Requirements,
    /// `pylock.toml`, `pylock.*.toml` (PEP 751).
    Pylock,
    /// `uv.lock`.
    UvLock,
    /// `poetry.lock`.
    PoetryLock,
    /// `pdm.lock`.
    PdmLock,
    /// `rebar.lock`.
    RebarLock,
    /// `mix.lock`.
    MixLock,
}

/// What one file names.
#[derive(Debug, Clone, PartialEq)]
pub struct LockFile {
    /// The path as given, for messages.
    pub path: String,
    pub format: Format,
    pub python: Vec<PythonWant>,
    pub hex: Vec<HexWant>,
    /// Entries the mirror cannot serve (git, path, editable, URL sources...), with why.
    pub skipped: Vec<Skipped>,
    /// Requirements files only: the files it includes (`-r`/`--requirement`), as written.
    pub includes: Vec<String>,
}

/// A Python project the file names.
#[derive(Debug, Clone, PartialEq)]
pub struct PythonWant {
    /// The project name as written (the runner normalizes it).
    pub project: String,
    pub pick: Pick,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Pick {
    /// A lock file names the version and its files.
    Locked { version: String, files: Vec<LockedFile> },
    /// A requirement line: the newest version matching `specifiers` (PEP 440, empty for any), its
    /// files limited to those with one of `hashes` when there are any.
    Requirement { specifiers: String, hashes: Vec<Digest> },
}

/// A distribution file a lock file names.
#[derive(Debug, Clone, PartialEq)]
pub struct LockedFile {
    /// The file name (from a `url`, its last path segment, percent-decoded).
    pub filename: String,
    /// What the lock file records of its hashes (may be empty).
    pub hashes: Vec<Digest>,
}

/// A hash as lock files write it: `sha256:…`, `--hash=sha256:…`, `{ sha256 = "…" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// Lowercase algorithm name, such as `sha256`.
    pub algorithm: String,
    /// Lowercase hex.
    pub hex: String,
}

/// A hex package release the file names.
#[derive(Debug, Clone, PartialEq)]
pub struct HexWant {
    /// The hex package name (which may differ from the application's name in the lock).
    pub name: String,
    pub version: String,
    /// The repository (`hexpm` unless the lock names another).
    pub repo: String,
    /// Lowercase hex sha256 checksums, when the lock records them: the inner one (rebar's
    /// `pkg_hash`, mix's fourth element) and the outer one (`pkg_hash_ext`, mix's eighth).
    pub inner_checksum: Option<String>,
    pub outer_checksum: Option<String>,
}

/// An entry left out, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub what: String,
    pub why: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error(
        "{path}: cannot tell the format from the file name (expected requirements*.txt, pylock.toml, uv.lock, poetry.lock, pdm.lock, rebar.lock or mix.lock)"
    )]
    UnknownFormat { path: String },
    #[error("{path}, line {line}: {reason}")]
    Syntax { path: String, line: usize, reason: String },
}

impl Format {
    /// The format a file name says, if any.
    pub fn of(file_name: &str) -> Option<Format> {
        let _ = file_name;
        todo!()
    }
}

/// Reads what `text` names, in the format its `path`'s file name says.
pub fn parse(path: &str, text: &str) -> Result<LockFile, LockError> {
    let _ = (path, text);
    todo!()
}

/// Reads `path` and, for a requirements file, every file it includes (relative to the including
/// file, each once): one `LockFile` per file, the given one first.
pub fn read(path: &Path) -> Result<Vec<LockFile>, LockError> {
    let _ = path;
    todo!()
}
