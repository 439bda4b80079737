//! `uv.lock`: every package with its source and the files of its version.

use serde::Deserialize;

use super::{Bad, LockFile, LockedFile, from_toml, toml_digests, url_file_name};

#[derive(Deserialize)]
struct Lock {
    #[serde(default)]
    package: Vec<Package>,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    version: Option<String>,
    source: Option<Source>,
    sdist: Option<File>,
    #[serde(default)]
    wheels: Vec<File>,
}

/// One of these is set.
#[derive(Deserialize)]
struct Source {
    registry: Option<String>,
    editable: Option<String>,
    r#virtual: Option<String>,
    git: Option<String>,
    path: Option<String>,
    directory: Option<String>,
    url: Option<String>,
}

#[derive(Deserialize)]
struct File {
    /// Absent for a file of a local registry (then `path` is set), which the mirror cannot have.
    url: Option<String>,
    hash: Option<toml::Spanned<String>>,
}

pub(super) fn parse(text: &str, lock: &mut LockFile) -> Result<(), Bad> {
    let parsed: Lock = from_toml(text)?;
    for package in parsed.package {
        if let Some(why) = package.source.as_ref().and_then(unservable) {
            lock.skip(package.name, why);
            continue;
        }
        let Some(version) = package.version else {
            lock.skip(package.name, "no version recorded");
            continue;
        };
        let mut files = Vec::new();
        for file in package.sdist.iter().chain(&package.wheels) {
            let Some(filename) = file.url.as_deref().and_then(url_file_name) else {
                continue;
            };
            let hashes = toml_digests(text, &file.hash)?;
            files.push(LockedFile { filename, hashes });
        }
        lock.push_locked(&package.name, &version, files);
    }
    Ok(())
}

/// Why a package from this source cannot come from the mirror; `None` for a registry.
fn unservable(source: &Source) -> Option<&'static str> {
    if source.registry.is_some() {
        return None;
    }
    let is_root = |dir: &Option<String>| dir.as_deref() == Some(".");
    Some(if is_root(&source.r#virtual) || is_root(&source.editable) {
        "the project itself"
    } else if source.editable.is_some() {
        "an editable local project"
    } else if source.r#virtual.is_some() {
        "a local project"
    } else if source.git.is_some() {
        "a git source"
    } else if source.path.is_some() {
        "a local path"
    } else if source.directory.is_some() {
        "a local directory"
    } else if source.url.is_some() {
        "a direct URL"
    } else {
        "a source uv did not name"
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Digest, Format, LockError, LockedFile, Pick, PythonWant, Skipped, parse};

    const LOCK: &str = r#"version = 1
revision = 2
requires-python = ">=3.11"

[[package]]
name = "certifi"
version = "2024.8.30"
source = { registry = "https://index.example/simple" }
sdist = { url = "https://files.example/packages/b0/ee/certifi-2024.8.30.tar.gz", hash = "sha256:BEC941D2AA8195E248A60B31FF9F0558284CF01A52591CEDA73EA9AFFFD9C8E9", size = 168507, upload-time = "2024-08-30T01:55:04.365Z" }
wheels = [
    { url = "https://files.example/packages/12/90/certifi-2024.8.30-py3-none-any.whl", hash = "sha256:922820b53db7a7257ffbda3f597266d435245903d80737e34f8a45ff3e3230d8", size = 167321, upload-time = "2024-08-30T01:55:02.591Z" },
    { url = "https://files.example/packages/12/91/certifi-2024.8.30%2Blocal-py2-none-any.whl", size = 167000 },
]

[[package]]
name = "demo"
version = "0.1.0"
source = { virtual = "." }
dependencies = [
    { name = "certifi" },
    { name = "tool" },
]

[package.metadata]
requires-dist = [
    { name = "certifi", specifier = ">=2024" },
    { name = "tool", git = "https://git.example/org/tool?rev=main" },
]

[[package]]
name = "member"
version = "0.2.0"
source = { editable = "packages/member" }

[[package]]
name = "tool"
version = "1.2.0"
source = { git = "https://git.example/org/tool?rev=main#4a5b6c7d8e9f00112233445566778899aabbccdd" }

[[package]]
name = "vendored"
version = "3.0"
source = { registry = "../wheels" }
wheels = [
    { path = "vendored-3.0-py3-none-any.whl", hash = "sha256:00112233" },
]
"#;

    #[test]
    fn registry_packages_with_their_files_and_the_rest_skipped() {
        let lock = parse("uv.lock", LOCK).unwrap();
        assert_eq!(lock.format, Format::UvLock);
        assert_eq!(
            lock.python,
            [
                PythonWant {
                    project: "certifi".into(),
                    pick: Pick::Locked {
                        version: "2024.8.30".into(),
                        files: vec![
                            LockedFile {
                                filename: "certifi-2024.8.30.tar.gz".into(),
                                hashes: vec![Digest {
                                    algorithm: "sha256".into(),
                                    hex: "bec941d2aa8195e248a60b31ff9f0558284cf01a52591ceda73ea9afffd9c8e9"
                                        .into(),
                                }],
                            },
                            LockedFile {
                                filename: "certifi-2024.8.30-py3-none-any.whl".into(),
                                hashes: vec![Digest {
                                    algorithm: "sha256".into(),
                                    hex: "922820b53db7a7257ffbda3f597266d435245903d80737e34f8a45ff3e3230d8"
                                        .into(),
                                }],
                            },
                            LockedFile {
                                filename: "certifi-2024.8.30+local-py2-none-any.whl".into(),
                                hashes: vec![],
                            },
                        ],
                    },
                },
                // A local registry's files are not on the mirror's indexes; the version may be.
                PythonWant {
                    project: "vendored".into(),
                    pick: Pick::Locked {
                        version: "3.0".into(),
                        files: vec![]
                    },
                },
            ]
        );
        let skipped = |what: &str, why: &str| Skipped {
            what: what.into(),
            why: why.into(),
        };
        assert_eq!(
            lock.skipped,
            [
                skipped("demo", "the project itself"),
                skipped("member", "an editable local project"),
                skipped("tool", "a git source"),
            ]
        );
    }

    #[test]
    fn a_bad_hash_or_bad_toml_names_its_line() {
        let text = LOCK.replace("sha256:922820b5", "922820b5");
        match parse("uv.lock", &text) {
            Err(LockError::Syntax { line, reason, .. }) => {
                assert_eq!(line, 11);
                assert!(reason.contains("not a hash"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let text = "version = 1\n\n[[package]]\nname = \"six\"\nversion = 1.16.0\n";
        match parse("uv.lock", text) {
            Err(LockError::Syntax { path, line, reason }) => {
                assert_eq!((path.as_str(), line), ("uv.lock", 5), "{reason}");
                assert!(!reason.contains('\n'));
            }
            other => panic!("{other:?}"),
        }
        // A value of the wrong type is found by serde, and still placed.
        let text = "version = 1\n[[package]]\nname = \"six\"\nwheels = \"none\"\n";
        match parse("uv.lock", text) {
            Err(LockError::Syntax { line, .. }) => assert_eq!(line, 4),
            other => panic!("{other:?}"),
        }
    }
}
