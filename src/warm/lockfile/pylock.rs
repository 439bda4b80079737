//! `pylock.toml` (PEP 751): packages with their version and the files the lock allows.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{Bad, LockFile, LockedFile, digest_of, from_toml, line_at, url_file_name};

#[derive(Deserialize)]
struct Lock {
    #[serde(default)]
    packages: Vec<Package>,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    version: Option<String>,
    vcs: Option<IgnoredAny>,
    directory: Option<IgnoredAny>,
    archive: Option<IgnoredAny>,
    sdist: Option<File>,
    #[serde(default)]
    wheels: Vec<File>,
}

#[derive(Deserialize)]
struct File {
    name: Option<String>,
    /// Absent for a file named by `path`, on the locker's disk only.
    url: Option<String>,
    #[serde(default)]
    hashes: BTreeMap<String, toml::Spanned<String>>,
}

pub(super) fn parse(text: &str, lock: &mut LockFile) -> Result<(), Bad> {
    let parsed: Lock = from_toml(text)?;
    for package in parsed.packages {
        let unservable = [
            (package.vcs.is_some(), "a VCS source"),
            (package.directory.is_some(), "a local directory"),
            (package.archive.is_some(), "an archive outside any index"),
        ];
        if let Some((_, why)) = unservable.iter().find(|(set, _)| *set) {
            lock.skip(package.name, *why);
            continue;
        }
        let mut files = Vec::new();
        for file in package.sdist.iter().chain(&package.wheels) {
            let Some(filename) = file
                .name
                .clone()
                .or_else(|| file.url.as_deref().and_then(url_file_name))
            else {
                continue;
            };
            let mut hashes = Vec::new();
            for (algorithm, hex) in &file.hashes {
                let line = line_at(text, hex.span().start);
                hashes.push(digest_of(algorithm, hex.get_ref()).map_err(|reason| Bad::new(line, reason))?);
            }
            files.push(LockedFile { filename, hashes });
        }
        // PEP 751 makes `version` optional; a file's name still tells it.
        let version = package
            .version
            .or_else(|| files.iter().find_map(|file| version_of(&file.filename)));
        match version {
            Some(version) => lock.push_locked(&package.name, &version, files),
            None => lock.skip(package.name, "no version recorded"),
        }
    }
    Ok(())
}

/// The version in a wheel's (`name-version-tags.whl`) or an sdist's (`name-version.tar.gz`) name.
fn version_of(filename: &str) -> Option<String> {
    let version = match filename.strip_suffix(".whl") {
        Some(stem) => stem.split('-').nth(1),
        None => filename
            .strip_suffix(".tar.gz")
            .and_then(|stem| stem.rsplit_once('-'))
            .map(|(_, v)| v),
    };
    version.filter(|version| !version.is_empty()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::super::{Digest, LockError, Skipped, parse};
    use super::*;
    use crate::warm::lockfile::test_support::{sha256, want};

    const LOCK: &str = r#"lock-version = "1.0"
environments = ["sys_platform == 'linux'"]
requires-python = ">=3.12"
created-by = "uv"

[[packages]]
name = "attrs"
version = "25.1.0"
index = "https://index.example/simple"
sdist = { url = "https://files.example/packages/49/7c/attrs-25.1.0.tar.gz", upload-time = 2025-01-25T11:30:12.507Z, size = 810562, hashes = { sha256 = "1C97078A80C814273A76B2A298A932EB681C87415C11DEE0A6921DE7F1B02C3E" } }
wheels = [
    { name = "attrs-25.1.0-py3-none-any.whl", url = "https://files.example/packages/fc/30/attrs-25.1.0-py3-none-any.whl", upload-time = 2025-01-25T11:30:10.164Z, size = 63152, hashes = { sha256 = "c75a69e28a550a7e93789579c22aa26b0f5b83b75dc4e08fe092980051e1090a" } },
]

[[packages]]
name = "numpy"
version = "2.2.3"
marker = "python_version >= '3.12'"
index = "https://index.example/simple"

[[packages.wheels]]
url = "https://files.example/packages/numpy-2.2.3-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
size = 16123456
hashes = { sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", blake2b = "FFEE" }

[[packages.wheels]]
name = "numpy-2.2.3-cp312-cp312-win_amd64.whl"
path = "wheels/numpy-2.2.3-cp312-cp312-win_amd64.whl"

[[packages.wheels]]
path = "wheels/numpy-2.2.3-cp312-cp312-macosx_14_0_arm64.whl"

[[packages]]
name = "tool"

[packages.vcs]
type = "git"
url = "https://git.example/org/tool.git"
commit-id = "4a5b6c7d8e9f00112233445566778899aabbccdd"

[[packages]]
name = "local-pkg"
directory = { path = "./local", editable = true }

[[packages]]
name = "bundle"
archive = { url = "https://files.example/bundle.zip", hashes = { sha256 = "00ff" } }

[[packages]]
name = "unversioned"
wheels = [{ url = "https://files.example/packages/unversioned-0.3-py3-none-any.whl" }]

[[packages]]
name = "nothing"

[tool.locker]
extra = true
"#;

    #[test]
    fn packages_from_indexes_and_the_rest_skipped() {
        let lock = parse("pylock.toml", LOCK).unwrap();
        assert_eq!(
            lock.python,
            [
                want(
                    "attrs",
                    "25.1.0",
                    vec![
                        LockedFile {
                            filename: "attrs-25.1.0.tar.gz".into(),
                            hashes: vec![sha256(
                                "1c97078a80c814273a76b2a298a932eb681c87415c11dee0a6921de7f1b02c3e"
                            )],
                        },
                        LockedFile {
                            filename: "attrs-25.1.0-py3-none-any.whl".into(),
                            hashes: vec![sha256(
                                "c75a69e28a550a7e93789579c22aa26b0f5b83b75dc4e08fe092980051e1090a"
                            )],
                        },
                    ]
                ),
                want(
                    "numpy",
                    "2.2.3",
                    vec![
                        LockedFile {
                            filename:
                                "numpy-2.2.3-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
                                    .into(),
                            hashes: vec![
                                Digest {
                                    algorithm: "blake2b".into(),
                                    hex: "ffee".into()
                                },
                                sha256("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
                            ],
                        },
                        LockedFile {
                            filename: "numpy-2.2.3-cp312-cp312-win_amd64.whl".into(),
                            hashes: vec![]
                        },
                    ]
                ),
                want(
                    "unversioned",
                    "0.3",
                    vec![LockedFile {
                        filename: "unversioned-0.3-py3-none-any.whl".into(),
                        hashes: vec![]
                    }]
                ),
            ]
        );
        let skipped = |what: &str, why: &str| Skipped {
            what: what.into(),
            why: why.into(),
        };
        assert_eq!(
            lock.skipped,
            [
                skipped("tool", "a VCS source"),
                skipped("local-pkg", "a local directory"),
                skipped("bundle", "an archive outside any index"),
                skipped("nothing", "no version recorded"),
            ]
        );
        assert_eq!(parse("pylock.prod.toml", LOCK).unwrap().python.len(), 3);
    }

    #[test]
    fn versions_from_file_names() {
        assert_eq!(
            version_of("six-1.16.0-py2.py3-none-any.whl").as_deref(),
            Some("1.16.0")
        );
        assert_eq!(version_of("zope_interface-7.1.tar.gz").as_deref(), Some("7.1"));
        assert_eq!(version_of("odd.zip"), None);
    }

    #[test]
    fn a_hash_that_is_not_hex_names_its_line() {
        let text = LOCK.replace("blake2b = \"FFEE\"", "blake2b = \"not hex\"");
        match parse("pylock.toml", &text) {
            Err(LockError::Syntax { line, reason, .. }) => {
                assert_eq!(line, 24, "{reason}");
                assert!(reason.contains("blake2b"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let text = "lock-version = \"1.0\"\n[[packages]\nname = \"x\"\n";
        assert!(matches!(
            parse("pylock.toml", text),
            Err(LockError::Syntax { line: 2, .. })
        ));
    }
}
