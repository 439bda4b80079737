//! Request paths under the mirror's hex root: normalizing what clients send and telling which
//! resource a path names, so the HTTP layer can pick a cache policy without string matching.

use std::borrow::Cow;

use thiserror::Error;

use super::name::{NameError, split_docs_name, split_tarball_name, tarball_name, validate_package_name};

/// A path normalized: every run of `/` becomes one, and it starts with `/`. rebar3 keeps the
/// trailing slash of `HEX_CDN` and asks for `//packages/x`; other clients may do the same.
pub fn normalize_path(path: &str) -> Cow<'_, str> {
    let clean = path.starts_with('/') && !path.contains("//");
    if clean {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len() + 1);
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || path.ends_with('/') {
        out.push('/');
    }
    Cow::Owned(out)
}

/// What a path under the hex root names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoPath {
    /// `/names`
    Names,
    /// `/versions`
    Versions,
    /// `/packages/{name}`
    Package { name: String },
    /// `/tarballs/{name}-{version}.tar`
    Tarball { name: String, version: String },
    /// `/docs/{name}-{version}.tar.gz`
    Docs { name: String, version: String },
    /// `/public_key`
    PublicKey,
    /// `/installs/...` (the hex and rebar3 installer CSVs, their signatures, `.ez` archives):
    /// `path` is what follows `/installs/`, one or two safe segments.
    Installs { path: String },
    /// `/repos/{org}/{rest}`: a hosted repository of this mirror, or a private organisation's
    /// repository (never cached on a shared mirror). `rest` is the path under it, from its `/`.
    Organization { org: String, rest: String },
}

impl RepoPath {
    /// The path under the repository root, as the upstream serves it.
    pub fn path(&self) -> String {
        match self {
            Self::Names => "/names".into(),
            Self::Versions => "/versions".into(),
            Self::Package { name } => format!("/packages/{name}"),
            Self::Tarball { name, version } => format!("/tarballs/{}", tarball_name(name, version)),
            Self::Docs { name, version } => format!("/docs/{name}-{version}.tar.gz"),
            Self::PublicKey => "/public_key".into(),
            Self::Installs { path } => format!("/installs/{path}"),
            Self::Organization { org, rest } => format!("/repos/{org}{rest}"),
        }
    }
}

/// Why a path names nothing the mirror serves.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PathError {
    #[error("'{0}' is not a path of a hex repository")]
    Unknown(String),
    #[error("'{path}' names an invalid package or file: {source}")]
    Invalid {
        path: String,
        #[source]
        source: NameError,
    },
}

/// Classifies a request path (normalized first, see [`normalize_path`]).
pub fn parse_path(path: &str) -> Result<RepoPath, PathError> {
    let path = normalize_path(path);
    let unknown = || PathError::Unknown(path.to_string());
    let invalid = |source| PathError::Invalid {
        path: path.to_string(),
        source,
    };
    let segments: Vec<&str> = path[1..].split('/').collect();
    match segments.as_slice() {
        ["names"] => Ok(RepoPath::Names),
        ["versions"] => Ok(RepoPath::Versions),
        ["public_key"] => Ok(RepoPath::PublicKey),
        ["packages", name] => {
            validate_package_name(name).map_err(invalid)?;
            Ok(RepoPath::Package {
                name: (*name).to_owned(),
            })
        }
        ["tarballs", file] => {
            let (name, version) = split_tarball_name(file).map_err(invalid)?;
            Ok(RepoPath::Tarball {
                name: name.to_owned(),
                version: version.to_owned(),
            })
        }
        ["docs", file] => {
            let (name, version) = split_docs_name(file).map_err(invalid)?;
            Ok(RepoPath::Docs {
                name: name.to_owned(),
                version: version.to_owned(),
            })
        }
        ["installs", rest @ ..] if (1..=2).contains(&rest.len()) => {
            if rest.iter().all(|s| is_safe_segment(s)) {
                Ok(RepoPath::Installs { path: rest.join("/") })
            } else {
                Err(unknown())
            }
        }
        ["repos", org, rest @ ..] if is_safe_segment(org) && !rest.is_empty() && rest != [""] => {
            Ok(RepoPath::Organization {
                org: (*org).to_owned(),
                rest: format!("/{}", rest.join("/")),
            })
        }
        _ => Err(unknown()),
    }
}

/// A path segment that is safe to pass upstream and use in a key: ASCII letters, digits, `.`,
/// `-`, `_`, `+`, not starting with `.`, at most 255 bytes.
fn is_safe_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= 255
        && !segment.starts_with('.')
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_slashes_collapse() {
        for (input, expected) in [
            ("//packages/x", "/packages/x"),
            ("/packages/x", "/packages/x"),
            ("packages/x", "/packages/x"),
            ("///tarballs//x-1.0.tar", "/tarballs/x-1.0.tar"),
            ("", "/"),
            ("/", "/"),
            ("//", "/"),
            ("/names/", "/names/"),
        ] {
            assert_eq!(normalize_path(input), expected, "{input:?}");
        }
        assert!(matches!(normalize_path("/names"), Cow::Borrowed(_)));
    }

    #[test]
    fn paths_are_classified() {
        let tarball = |name: &str, version: &str| RepoPath::Tarball {
            name: name.into(),
            version: version.into(),
        };
        for (path, expected) in [
            ("/names", RepoPath::Names),
            ("//versions", RepoPath::Versions),
            ("/public_key", RepoPath::PublicKey),
            (
                "//packages/fixbar",
                RepoPath::Package {
                    name: "fixbar".into(),
                },
            ),
            ("/tarballs/fixbar-0.1.0.tar", tarball("fixbar", "0.1.0")),
            (
                "//tarballs/my_app-1.0.0-rc.1+build.5.tar",
                tarball("my_app", "1.0.0-rc.1+build.5"),
            ),
            (
                "/docs/fixbar-0.1.0.tar.gz",
                RepoPath::Docs {
                    name: "fixbar".into(),
                    version: "0.1.0".into(),
                },
            ),
            (
                "/installs/hex-1.x.csv.signed",
                RepoPath::Installs {
                    path: "hex-1.x.csv.signed".into(),
                },
            ),
            (
                "/installs/1.15.0/hex-2.0.6.ez",
                RepoPath::Installs {
                    path: "1.15.0/hex-2.0.6.ez".into(),
                },
            ),
            (
                "/repos/acme/packages/secret",
                RepoPath::Organization {
                    org: "acme".into(),
                    rest: "/packages/secret".into(),
                },
            ),
            (
                "/repos/team//tarballs/x-1.0.0.tar",
                RepoPath::Organization {
                    org: "team".into(),
                    rest: "/tarballs/x-1.0.0.tar".into(),
                },
            ),
        ] {
            assert_eq!(parse_path(path), Ok(expected.clone()), "{path}");
            // The upstream path is the request's, normalized.
            assert_eq!(expected.path(), normalize_path(path), "{path}");
        }
    }

    #[test]
    fn unknown_and_invalid_paths() {
        for path in [
            "/",
            "/names/",
            "/names/x",
            "/packages",
            "/packages/a/b",
            "/installs",
            "/installs/../../etc/passwd",
            "/installs/a/b/c",
            "/installs/.hidden",
            "/repos/acme",
            "/repos/../x",
            "/tarballs",
        ] {
            assert!(
                matches!(parse_path(path), Err(PathError::Unknown(_))),
                "{path}: {:?}",
                parse_path(path)
            );
        }
        for path in [
            "/packages/",
            "/packages/Fixbar",
            "/packages/..",
            "/packages/a%2f..",
            "/tarballs/fixbar.tar",
            "/tarballs/..-1.0.tar",
            "/tarballs/fixbar-..%2F..%2Fx.tar",
            "/docs/fixbar-0.1.0.tar",
        ] {
            assert!(
                matches!(parse_path(path), Err(PathError::Invalid { .. })),
                "{path}: {:?}",
                parse_path(path)
            );
        }
        let err = parse_path("//packages/a.b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "'/packages/a.b' names an invalid package or file: the package name contains the character '.'; only ASCII letters, digits and '_' are allowed"
        );
    }
}
