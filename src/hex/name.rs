//! Package names, versions, and the `{name}-{version}` file names of tarballs and docs.
//!
//! Everything here ends up in a cache key or an upstream path, so anything that could escape a
//! path segment (`/`, `\`, `..`, control characters) is refused before it gets that far.

use thiserror::Error;

/// Longest package name accepted, in bytes. hex.pm sets no limit of its own; real names are far
/// shorter, and a cap keeps keys and paths bounded.
pub const MAX_PACKAGE_NAME_LEN: usize = 255;

/// Longest version accepted, in bytes (semver strings with build metadata stay well below it).
pub const MAX_VERSION_LEN: usize = 255;

/// Why a package name, version or file name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("the package name is empty")]
    EmptyName,
    #[error("the package name is {len} bytes long; at most {MAX_PACKAGE_NAME_LEN} are allowed")]
    NameTooLong { len: usize },
    #[error("the package name must start with a lower-case ASCII letter")]
    BadNameStart,
    #[error(
        "the package name contains the character '{}'; only ASCII letters, digits and '_' are allowed",
        .0.escape_default()
    )]
    BadNameCharacter(char),
    #[error("the version is empty")]
    EmptyVersion,
    #[error("the version is {len} bytes long; at most {MAX_VERSION_LEN} are allowed")]
    VersionTooLong { len: usize },
    #[error(
        "the version contains the character '{}'; only printable ASCII other than '/' and '\\' is allowed",
        .0.escape_default()
    )]
    BadVersionCharacter(char),
    #[error("the version must not start with '.' or contain '..'")]
    DotsInVersion,
    #[error("'{file}' is not a file name of the form '{{name}}-{{version}}{suffix}'")]
    BadFileName { file: String, suffix: &'static str },
}

/// Accepts hex package names: a lower-case ASCII letter, then ASCII letters, digits and `_`, at
/// most [`MAX_PACKAGE_NAME_LEN`] bytes.
///
/// hex.pm validates names with `~r"^[a-z]\w*$"` (hexpm's `Package` changeset), and `\w` there is
/// `[A-Za-z0-9_]`: upper case after the first letter is allowed, so it is accepted here too
/// rather than 404 a package hex.pm serves. New names are lower case in practice.
pub fn validate_package_name(name: &str) -> Result<(), NameError> {
    let first = *name.as_bytes().first().ok_or(NameError::EmptyName)?;
    if name.len() > MAX_PACKAGE_NAME_LEN {
        return Err(NameError::NameTooLong { len: name.len() });
    }
    if !first.is_ascii_lowercase() {
        return Err(NameError::BadNameStart);
    }
    match name.chars().find(|&c| !c.is_ascii_alphanumeric() && c != '_') {
        Some(c) => Err(NameError::BadNameCharacter(c)),
        None => Ok(()),
    }
}

/// A light sanity check of a version: non-empty, at most [`MAX_VERSION_LEN`] bytes, printable
/// ASCII without space, `/` or `\`, not starting with `.` and without `..`. hex versions are
/// semver (`1.0.0-rc.1+build.5`); this does not parse them, it only keeps them safe in paths.
pub fn validate_version(version: &str) -> Result<(), NameError> {
    if version.is_empty() {
        return Err(NameError::EmptyVersion);
    }
    if version.len() > MAX_VERSION_LEN {
        return Err(NameError::VersionTooLong { len: version.len() });
    }
    if let Some(c) = version
        .chars()
        .find(|&c| !c.is_ascii_graphic() || c == '/' || c == '\\')
    {
        return Err(NameError::BadVersionCharacter(c));
    }
    if version.starts_with('.') || version.contains("..") {
        return Err(NameError::DotsInVersion);
    }
    Ok(())
}

/// Splits `{name}-{version}{suffix}` at the first `-` (names have none; versions may have `-`
/// and `+`), and validates both halves.
fn split_file_name<'a>(file: &'a str, suffix: &'static str) -> Result<(&'a str, &'a str), NameError> {
    let bad = || NameError::BadFileName {
        file: file.to_owned(),
        suffix,
    };
    let stem = file.strip_suffix(suffix).ok_or_else(bad)?;
    let (name, version) = stem.split_once('-').ok_or_else(bad)?;
    validate_package_name(name)?;
    validate_version(version)?;
    Ok((name, version))
}

/// The package name and version of a tarball file name, `{name}-{version}.tar`.
pub fn split_tarball_name(file: &str) -> Result<(&str, &str), NameError> {
    split_file_name(file, ".tar")
}

/// The package name and version of a docs file name, `{name}-{version}.tar.gz`.
pub fn split_docs_name(file: &str) -> Result<(&str, &str), NameError> {
    split_file_name(file, ".tar.gz")
}

/// The tarball file name of a release: `{name}-{version}.tar`.
pub fn tarball_name(name: &str, version: &str) -> String {
    format!("{name}-{version}.tar")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_package_names() {
        for name in [
            "a",
            "fixbar",
            "my_app",
            "phoenix_live_view",
            "x1",
            "a_",
            "httpoison2",
            "aB",
        ] {
            assert_eq!(validate_package_name(name), Ok(()), "{name}");
        }
        assert_eq!(validate_package_name(&"a".repeat(255)), Ok(()));
    }

    #[test]
    fn invalid_package_names() {
        let long = "a".repeat(256);
        for (name, expected) in [
            ("", NameError::EmptyName),
            ("1abc", NameError::BadNameStart),
            ("_abc", NameError::BadNameStart),
            ("Abc", NameError::BadNameStart),
            (".", NameError::BadNameStart),
            ("..", NameError::BadNameStart),
            ("a-b", NameError::BadNameCharacter('-')),
            ("a.b", NameError::BadNameCharacter('.')),
            ("a/b", NameError::BadNameCharacter('/')),
            ("a%2f", NameError::BadNameCharacter('%')),
            ("a b", NameError::BadNameCharacter(' ')),
            ("café", NameError::BadNameCharacter('é')),
            (long.as_str(), NameError::NameTooLong { len: 256 }),
        ] {
            assert_eq!(validate_package_name(name), Err(expected), "{name:?}");
        }
        assert!(NameError::BadNameCharacter('\n').to_string().contains("'\\n'"));
    }

    #[test]
    fn versions() {
        for version in [
            "0.1.0",
            "1.0.0-rc.1+build.5",
            "2.0.0-alpha-2",
            "1.0.0+20130313144700",
        ] {
            assert_eq!(validate_version(version), Ok(()), "{version}");
        }
        for (version, expected) in [
            ("", NameError::EmptyVersion),
            ("1.0/../x", NameError::BadVersionCharacter('/')),
            ("1.0\\x", NameError::BadVersionCharacter('\\')),
            ("1.0 x", NameError::BadVersionCharacter(' ')),
            ("1.0\n", NameError::BadVersionCharacter('\n')),
            ("1.0\0", NameError::BadVersionCharacter('\0')),
            ("1.é", NameError::BadVersionCharacter('é')),
            ("..", NameError::DotsInVersion),
            (".1", NameError::DotsInVersion),
            ("1..0", NameError::DotsInVersion),
        ] {
            assert_eq!(validate_version(version), Err(expected), "{version:?}");
        }
        assert_eq!(
            validate_version(&"1".repeat(256)),
            Err(NameError::VersionTooLong { len: 256 })
        );
    }

    #[test]
    fn tarball_names_split_at_the_first_dash() {
        assert_eq!(split_tarball_name("fixbar-0.1.0.tar"), Ok(("fixbar", "0.1.0")));
        assert_eq!(
            split_tarball_name("my_app-1.0.0-rc.1+build.5.tar"),
            Ok(("my_app", "1.0.0-rc.1+build.5"))
        );
        assert_eq!(tarball_name("my_app", "1.0.0-rc.1"), "my_app-1.0.0-rc.1.tar");
        assert_eq!(split_docs_name("fixbar-0.1.0.tar.gz"), Ok(("fixbar", "0.1.0")));
    }

    #[test]
    fn bad_tarball_names() {
        for file in [
            "fixbar.tar",
            "fixbar-0.1.0.tar.gz.zip",
            "fixbar-0.1.0",
            "fixbar-0.1.0.tgz",
            "",
            ".tar",
        ] {
            assert!(
                matches!(split_tarball_name(file), Err(NameError::BadFileName { .. })),
                "{file:?}"
            );
        }
        for (file, expected) in [
            ("-0.1.0.tar", NameError::EmptyName),
            ("fixbar-.tar", NameError::EmptyVersion),
            ("Fixbar-0.1.0.tar", NameError::BadNameStart),
            ("fix.bar-0.1.0.tar", NameError::BadNameCharacter('.')),
            // Traversal attempts.
            ("..-0.1.0.tar", NameError::BadNameStart),
            ("fixbar-../../etc/passwd.tar", NameError::BadVersionCharacter('/')),
            ("fixbar-..%2f..%2fx.tar", NameError::DotsInVersion),
            ("fixbar-..tar", NameError::DotsInVersion),
            ("fixbar-1.0\\..\\x.tar", NameError::BadVersionCharacter('\\')),
            ("../fixbar-0.1.0.tar", NameError::BadNameStart),
        ] {
            assert_eq!(split_tarball_name(file), Err(expected), "{file:?}");
        }
        // A tarball name is not a docs name, nor the other way round.
        assert!(split_docs_name("fixbar-0.1.0.tar").is_err());
        assert_eq!(
            split_tarball_name("fixbar-0.1.0.tar.gz"),
            Err(NameError::BadFileName {
                file: "fixbar-0.1.0.tar.gz".into(),
                suffix: ".tar"
            })
        );
        assert_eq!(
            NameError::BadFileName {
                file: "x".into(),
                suffix: ".tar"
            }
            .to_string(),
            "'x' is not a file name of the form '{name}-{version}.tar'"
        );
    }
}
