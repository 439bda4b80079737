//! Lock files and requirements files, read into what `pkgmirror warm` asks the server for.
//!
//! Parsing is pure (`parse`); `read` adds the file system: it reads a file and, for a
//! requirements file, the files it includes with `-r`.

use std::collections::HashSet;
use std::path::Path;

use serde::de::DeserializeOwned;

// A syntax error as a format's parser finds it (`parse` adds the path).
use crate::hex::terms::Bad;

mod mix;
mod pdm;
mod poetry;
mod pylock;
mod rebar;
mod requirements;
mod uv;

#[cfg(test)]
mod test_support;

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
    Syntax {
        path: String,
        line: usize,
        reason: String,
    },
}

impl Format {
    /// The format a file name says, if any. Given a path, only its last component counts.
    pub fn of(file_name: &str) -> Option<Format> {
        let name = Path::new(file_name).file_name()?.to_str()?;
        Some(match name {
            "pylock.toml" => Format::Pylock,
            "uv.lock" => Format::UvLock,
            "poetry.lock" => Format::PoetryLock,
            "pdm.lock" => Format::PdmLock,
            "rebar.lock" => Format::RebarLock,
            "mix.lock" => Format::MixLock,
            _ if is_named_pylock(name) => Format::Pylock,
            _ if name.ends_with(".txt") || name.ends_with(".in") => Format::Requirements,
            _ => return None,
        })
    }
}

/// PEP 751's `pylock.<name>.toml`, the name without dots.
fn is_named_pylock(file_name: &str) -> bool {
    file_name
        .strip_prefix("pylock.")
        .and_then(|rest| rest.strip_suffix(".toml"))
        .is_some_and(|name| !name.is_empty() && !name.contains('.'))
}

/// Reads what `text` names, in the format its `path`'s file name says.
pub fn parse(path: &str, text: &str) -> Result<LockFile, LockError> {
    let format = Format::of(path).ok_or_else(|| LockError::UnknownFormat {
        path: path.to_owned(),
    })?;
    parse_as(path, text, format)
}

fn parse_as(path: &str, text: &str, format: Format) -> Result<LockFile, LockError> {
    let mut lock = LockFile {
        path: path.to_owned(),
        format,
        python: Vec::new(),
        hex: Vec::new(),
        skipped: Vec::new(),
        includes: Vec::new(),
    };
    // Some Windows editors start a file with a byte order mark; no format gives it a meaning.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let parsed = match format {
        Format::Requirements => requirements::parse(text, &mut lock),
        Format::Pylock => pylock::parse(text, &mut lock),
        Format::UvLock => uv::parse(text, &mut lock),
        Format::PoetryLock => poetry::parse(text, &mut lock),
        Format::PdmLock => pdm::parse(text, &mut lock),
        Format::RebarLock => rebar::parse(text, &mut lock),
        Format::MixLock => mix::parse(text, &mut lock),
    };
    parsed.map_err(|bad| LockError::Syntax {
        path: path.to_owned(),
        line: bad.line,
        reason: bad.reason,
    })?;
    Ok(lock)
}

/// Reads `path` and, for a requirements file, every file it includes (relative to the including
/// file, each once): one `LockFile` per file, the given one first.
pub fn read(path: &Path) -> Result<Vec<LockFile>, LockError> {
    let shown = path.display().to_string();
    let format = Format::of(&shown).ok_or(LockError::UnknownFormat { path: shown })?;
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    // Depth first, so the files come in the order pip reads them.
    let mut pending = vec![(path.to_path_buf(), format)];
    while let Some((path, format)) = pending.pop() {
        // The same file spelt another way (`./base.txt`, `../reqs/base.txt`) is read once, which
        // also ends include cycles. A file that cannot be resolved fails at the read below.
        let identity = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if !seen.insert(identity) {
            continue;
        }
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|source| LockError::Read {
            path: shown.clone(),
            source,
        })?;
        let lock = parse_as(&shown, &text, format)?;
        let dir = path.parent().unwrap_or(Path::new(""));
        // pip reads an included file as a requirements file whatever its name.
        pending.extend(
            lock.includes
                .iter()
                .rev()
                .map(|file| (dir.join(file), Format::Requirements)),
        );
        files.push(lock);
    }
    Ok(files)
}

impl LockFile {
    fn skip(&mut self, what: impl Into<String>, why: impl Into<String>) {
        self.skipped.push(Skipped {
            what: what.into(),
            why: why.into(),
        });
    }

    fn push_locked(&mut self, project: &str, version: &str, files: Vec<LockedFile>) {
        self.python.push(PythonWant {
            project: project.to_owned(),
            pick: Pick::Locked {
                version: version.to_owned(),
                files,
            },
        });
    }
}

/// A hash written `algorithm:hex`.
fn digest(text: &str) -> Result<Digest, String> {
    match text.split_once(':') {
        Some((algorithm, hex)) => digest_of(algorithm, hex),
        None => Err(format!("{text:?} is not a hash of the form algorithm:hex")),
    }
}

/// A hash given as its algorithm and its hex, both checked and lowercased.
fn digest_of(algorithm: &str, hex: &str) -> Result<Digest, String> {
    let algorithm_ok = !algorithm.is_empty()
        && algorithm
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !algorithm_ok || !is_hex(hex) {
        return Err(format!(
            "{algorithm}:{hex:?} is not a hash of the form algorithm:hex"
        ));
    }
    Ok(Digest {
        algorithm: algorithm.to_ascii_lowercase(),
        hex: hex.to_ascii_lowercase(),
    })
}

fn is_hex(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// A distribution file's name from its URL: the last path segment, percent-decoded.
fn url_file_name(url: &str) -> Option<String> {
    let path = url.split(['#', '?']).next().unwrap_or(url);
    let segment = path.rsplit('/').next().filter(|segment| !segment.is_empty())?;
    Some(
        percent_encoding::percent_decode_str(segment)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// PEP 503's normalized name, to match a package with its entry in a lock's `[metadata.files]`.
fn normalized(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for part in name.split(['-', '_', '.']).filter(|part| !part.is_empty()) {
        if !out.is_empty() {
            out.push('-');
        }
        out.push_str(&part.to_ascii_lowercase());
    }
    out
}

/// A TOML lock file into its serde model; an error names the line it is on.
fn from_toml<T: DeserializeOwned>(text: &str) -> Result<T, Bad> {
    toml::from_str(text).map_err(|err| {
        let line = err.span().map_or(1, |span| line_at(text, span.start));
        Bad::new(line, err.message().trim().replace('\n', "; "))
    })
}

/// A file's `hash = "algorithm:hex"` in a TOML lock file, if it has one.
fn toml_digests(text: &str, hash: &Option<toml::Spanned<String>>) -> Result<Vec<Digest>, Bad> {
    hash.iter()
        .map(|hash| {
            digest(hash.get_ref()).map_err(|reason| Bad::new(line_at(text, hash.span().start), reason))
        })
        .collect()
}

/// The 1-based line of a byte offset.
fn line_at(text: &str, offset: usize) -> usize {
    let before = text.get(..offset).unwrap_or(text);
    before.bytes().filter(|&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_the_file_name() {
        let cases = [
            ("requirements.txt", Some(Format::Requirements)),
            ("requirements-dev.txt", Some(Format::Requirements)),
            ("reqs.in", Some(Format::Requirements)),
            ("deploy/requirements/base.txt", Some(Format::Requirements)),
            ("pylock.toml", Some(Format::Pylock)),
            ("pylock.dev.toml", Some(Format::Pylock)),
            ("pylock.a.b.toml", None),
            ("pylock..toml", None),
            ("project/uv.lock", Some(Format::UvLock)),
            ("poetry.lock", Some(Format::PoetryLock)),
            ("pdm.lock", Some(Format::PdmLock)),
            ("rebar.lock", Some(Format::RebarLock)),
            ("mix.lock", Some(Format::MixLock)),
            ("Cargo.lock", None),
            ("pyproject.toml", None),
            ("uv.lock/", Some(Format::UvLock)),
            ("", None),
        ];
        for (name, format) in cases {
            assert_eq!(Format::of(name), format, "{name}");
        }
    }

    #[test]
    fn an_unknown_file_name_is_an_error() {
        let err = parse("locks/Gemfile.lock", "GEM\n").unwrap_err();
        assert!(
            matches!(&err, LockError::UnknownFormat { path } if path == "locks/Gemfile.lock"),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("locks/Gemfile.lock: cannot tell the format")
        );
    }

    #[test]
    fn hashes_are_algorithm_and_hex_lowercased() {
        assert_eq!(
            digest("SHA256:ABCdef01"),
            Ok(Digest {
                algorithm: "sha256".into(),
                hex: "abcdef01".into()
            })
        );
        assert!(digest("abcdef01").is_err());
        assert!(digest("sha256:").is_err());
        assert!(digest(":abcd").is_err());
        assert!(digest("sha256:xyz").is_err());
    }

    #[test]
    fn file_names_come_from_the_last_url_segment_decoded() {
        let url = "https://files.example/packages/ab/cd/my%2Bpkg-1.0-py3-none-any.whl#sha256=00ff";
        assert_eq!(url_file_name(url).as_deref(), Some("my+pkg-1.0-py3-none-any.whl"));
        assert_eq!(
            url_file_name("https://files.example/x.tar.gz?raw=1").as_deref(),
            Some("x.tar.gz")
        );
        assert_eq!(url_file_name("https://files.example/dir/"), None);
    }

    #[test]
    fn names_normalize_as_pep_503_says() {
        assert_eq!(normalized("Charset_Normalizer"), "charset-normalizer");
        assert_eq!(normalized("zope.interface"), "zope-interface");
        assert_eq!(normalized("a--b__c"), "a-b-c");
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        let lock = parse("requirements.txt", "\u{feff}six==1.16.0\n").unwrap();
        assert_eq!(lock.python.len(), 1);
        assert_eq!(lock.python[0].project, "six");
    }

    #[test]
    fn read_follows_includes_once_relative_to_the_including_file() {
        let dir = tempfile::tempdir().unwrap();
        let reqs = dir.path().join("reqs");
        std::fs::create_dir(&reqs).unwrap();
        std::fs::write(
            dir.path().join("requirements-dev.txt"),
            "-r reqs/base.txt\n--requirement=reqs/test.txt\npytest==8.3.3\n",
        )
        .unwrap();
        // Included files name theirs relative to themselves, and may loop back.
        std::fs::write(reqs.join("base.txt"), "-r common.pip\nrequests==2.31.0\n").unwrap();
        std::fs::write(
            reqs.join("common.pip"),
            "-r ../requirements-dev.txt\nidna==3.10\n",
        )
        .unwrap();
        std::fs::write(reqs.join("test.txt"), "-r ./base.txt\ncoverage>=7\n").unwrap();

        let files = read(&dir.path().join("requirements-dev.txt")).unwrap();
        let projects: Vec<Vec<&str>> = files
            .iter()
            .map(|file| file.python.iter().map(|want| want.project.as_str()).collect())
            .collect();
        assert_eq!(
            projects,
            [vec!["pytest"], vec!["requests"], vec!["idna"], vec!["coverage"]]
        );
        assert!(files[0].path.ends_with("requirements-dev.txt"));
        assert_eq!(files[0].includes, ["reqs/base.txt", "reqs/test.txt"]);
        assert!(files[2].path.ends_with("common.pip"));
        assert_eq!(files[2].format, Format::Requirements);
    }

    #[test]
    fn read_reports_a_missing_file_and_an_unknown_format() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("requirements.txt"), "-r missing.txt\n").unwrap();
        let err = read(&dir.path().join("requirements.txt")).unwrap_err();
        assert!(
            matches!(&err, LockError::Read { path, .. } if path.ends_with("missing.txt")),
            "{err}"
        );

        let err = read(&dir.path().join("Pipfile.lock")).unwrap_err();
        assert!(matches!(err, LockError::UnknownFormat { .. }), "{err}");
    }

    #[test]
    fn read_reads_a_lock_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mix.lock");
        std::fs::write(&path, "%{\n  \"jason\": {:hex, :jason, \"1.4.4\"},\n}\n").unwrap();
        let files = read(&path).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].hex[0].name, "jason");
    }
}
