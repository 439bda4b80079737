//! Which files of a project page a lock file's entry names: pure, so every rule is unit-tested.
//!
//! A locked entry names its files; each must be on the page, and every hash the lock records must
//! agree with the index's. A requirement names a range: the newest version in it wins, as pip
//! picks (final releases before pre-releases, yanked files only for an exact pin), narrowed by
//! `--hash` values and by `--python-version` / `--platform`.

use std::str::FromStr as _;

use pep440_rs::{Operator, Version, VersionSpecifiers};

use super::lockfile::{Digest, LockedFile};
use crate::pypi::model::{DistFile, ProjectPage};
use crate::pypi::name::version_from_filename;

/// What an unlocked requirement is installed on: files for anything else are left out.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// CPython `X.Y`: wheels for other Pythons and files whose `requires-python` excludes it.
    pub python_version: Option<Version>,
    /// Wheel platform tags (`*` matches any run of characters); `any` always matches.
    pub platforms: Vec<String>,
}

impl Filters {
    fn is_empty(&self) -> bool {
        self.python_version.is_none() && self.platforms.is_empty()
    }

    /// Whether `file` can be installed where the filters say.
    pub fn admits(&self, file: &DistFile) -> bool {
        if let (Some(python), Some(requires)) = (&self.python_version, &file.requires_python)
            && let Ok(requires) = VersionSpecifiers::from_str(requires)
            && !requires.contains(python)
        {
            return false;
        }
        match wheel_tags(&file.filename) {
            Some(tags) => {
                self.python_version
                    .as_ref()
                    .is_none_or(|v| python_admits(v, tags.python, tags.abi))
                    && (self.platforms.is_empty() || platform_admits(&self.platforms, tags.platform))
            }
            // An sdist builds anywhere.
            None => true,
        }
    }
}

/// The files a locked entry names, or what is wrong with them.
pub fn locked<'p>(page: &'p ProjectPage, files: &[LockedFile]) -> (Vec<&'p DistFile>, Vec<String>) {
    let mut chosen = Vec::new();
    let mut problems = Vec::new();
    for wanted in files {
        let Some(file) = page.files.iter().find(|f| f.filename == wanted.filename) else {
            problems.push(format!("{} is not on the index", wanted.filename));
            continue;
        };
        let mismatches = hash_mismatches(file, &wanted.hashes);
        if mismatches.is_empty() {
            chosen.push(file);
        } else {
            problems.extend(mismatches);
        }
    }
    (chosen, problems)
}

/// The files of the newest version that `specifiers` allows, limited to those with one of
/// `hashes` (when any) and admitted by `filters`.
pub fn requirement<'p>(
    page: &'p ProjectPage,
    project: &str,
    specifiers: &str,
    hashes: &[Digest],
    filters: &Filters,
) -> Result<Vec<&'p DistFile>, String> {
    let specifiers = VersionSpecifiers::from_str(specifiers)
        .map_err(|e| format!("cannot read the version specifiers {specifiers:?}: {e}"))?;
    if let Some(unknown) = hashes.iter().find(|digest| {
        !page
            .files
            .iter()
            .any(|f| f.hashes.get(&digest.algorithm) == Some(&digest.hex))
    }) {
        return Err(format!(
            "hash mismatch: {}:{} matches no file the index lists",
            unknown.algorithm, unknown.hex
        ));
    }
    let exact_pin = specifiers
        .iter()
        .any(|s| matches!(s.operator(), Operator::Equal | Operator::ExactEqual));
    let candidates: Vec<(Version, &DistFile)> = page
        .files
        .iter()
        .filter(|f| exact_pin || f.yanked.is_none())
        .filter(|f| hashes.is_empty() || hashes.iter().any(|d| f.hashes.get(&d.algorithm) == Some(&d.hex)))
        .filter(|f| filters.admits(f))
        .filter_map(|f| {
            let version = Version::from_str(&version_from_filename(&f.filename, project)?).ok()?;
            specifiers.contains(&version).then_some((version, f))
        })
        .collect();
    // Final releases first; a pre-release only when nothing else matches (or it is asked for).
    let newest = |finals_only: bool| {
        candidates
            .iter()
            .filter(|(v, _)| !finals_only || !v.any_prerelease())
            .map(|(v, _)| v)
            .max()
            .cloned()
    };
    let Some(version) = newest(true).or_else(|| newest(false)) else {
        let narrowed = if filters.is_empty() {
            ""
        } else {
            " for the --python-version/--platform given"
        };
        return Err(format!("no file matches '{specifiers}'{narrowed}"));
    };
    Ok(candidates
        .into_iter()
        .filter(|(v, _)| *v == version)
        .map(|(_, f)| f)
        .collect())
}

/// Each hash the lock records that the index gives differently. A hash the index does not give
/// is checked on the downloaded bytes instead (sha256) or not at all.
fn hash_mismatches(file: &DistFile, recorded: &[Digest]) -> Vec<String> {
    recorded
        .iter()
        .filter_map(|digest| {
            let listed = file.hashes.get(&digest.algorithm)?;
            (*listed != digest.hex).then(|| {
                format!(
                    "hash mismatch for {}: the lock file says {}:{}, the index {}:{}",
                    file.filename, digest.algorithm, digest.hex, digest.algorithm, listed
                )
            })
        })
        .collect()
}

/// The tag fields of a wheel's file name (`{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`).
struct WheelTags<'a> {
    python: &'a str,
    abi: &'a str,
    platform: &'a str,
}

fn wheel_tags(filename: &str) -> Option<WheelTags<'_>> {
    let stem = filename.strip_suffix(".whl")?;
    let mut fields = stem.rsplitn(4, '-');
    let platform = fields.next()?;
    let abi = fields.next()?;
    let python = fields.next()?;
    fields.next()?;
    Some(WheelTags {
        python,
        abi,
        platform,
    })
}

/// Whether CPython `version` installs a wheel tagged `python`-`abi` (each a `.`-joined set), as
/// pip's tag list for it says: `py3`, `py3Y` for Y up to its own, `cp3Y` with its own ABI (or
/// none), and older `cp3Y` with the stable ABI (`abi3`).
fn python_admits(version: &Version, python: &str, abi: &str) -> bool {
    let release = version.release();
    let (major, minor) = (
        release.first().copied().unwrap_or(3),
        release.get(1).copied().unwrap_or(0),
    );
    let abis: Vec<&str> = abi.split('.').collect();
    let own_abi = format!("cp{major}{minor}");
    python.split('.').any(|tag| {
        let (implementation, digits) =
            tag.split_at(tag.find(|c: char| c.is_ascii_digit()).unwrap_or(tag.len()));
        let Some((tag_major, tag_minor)) = split_python_digits(digits) else {
            return false;
        };
        if tag_major != major {
            return false;
        }
        match implementation {
            "py" => tag_minor.is_none_or(|m| m <= minor),
            "cp" => match tag_minor {
                Some(m) if m == minor => abis
                    .iter()
                    .any(|a| *a == "none" || *a == "abi3" || a.starts_with(&own_abi)),
                Some(m) if m < minor => abis.contains(&"abi3"),
                Some(_) => false,
                None => abis.contains(&"none"),
            },
            _ => false,
        }
    })
}

/// `3` → (3, None); `312` → (3, Some(12)).
fn split_python_digits(digits: &str) -> Option<(u64, Option<u64>)> {
    let (major, minor) = digits.split_at_checked(1)?;
    let major = major.parse().ok()?;
    if minor.is_empty() {
        return Some((major, None));
    }
    Some((major, Some(minor.parse().ok()?)))
}

/// Whether one of the wheel's platform tags is `any` or matches one of `patterns`.
fn platform_admits(patterns: &[String], platform: &str) -> bool {
    platform
        .split('.')
        .any(|tag| tag == "any" || patterns.iter().any(|p| glob_matches(p, tag)))
}

/// `*` matches any run of characters; everything else itself.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pypi::model::Hashes;

    fn file(filename: &str, sha: &str) -> DistFile {
        let mut f = DistFile::bare(filename, &format!("https://files.example/{filename}"));
        f.hashes = Hashes::from_iter([("sha256".to_owned(), sha.to_owned())]);
        f
    }

    fn page(files: Vec<DistFile>) -> ProjectPage {
        ProjectPage {
            name: "demo".into(),
            files,
            versions: None,
            project_status: None,
            meta: Default::default(),
        }
    }

    fn sha(hex: &str) -> Digest {
        Digest {
            algorithm: "sha256".into(),
            hex: hex.into(),
        }
    }

    fn names(files: &[&DistFile]) -> Vec<String> {
        files.iter().map(|f| f.filename.clone()).collect()
    }

    fn demo() -> ProjectPage {
        let mut yanked = file("demo-2.1-py3-none-any.whl", "a21");
        yanked.yanked = Some("broken".into());
        let mut old_python = file(
            "demo-1.5-cp38-cp38-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "c15",
        );
        old_python.requires_python = Some(">=3.8".into());
        page(vec![
            file("demo-1.0.tar.gz", "s10"),
            file("demo-1.0-py3-none-any.whl", "a10"),
            old_python,
            file("demo-2.0.tar.gz", "s20"),
            file(
                "demo-2.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                "l20",
            ),
            file("demo-2.0-cp312-cp312-win_amd64.whl", "w20"),
            file("demo-2.0-cp39-abi3-macosx_11_0_arm64.whl", "m20"),
            yanked,
            file("demo-3.0b1-py3-none-any.whl", "b30"),
        ])
    }

    #[test]
    fn a_locked_entry_takes_its_files_and_names_a_wrong_hash_or_a_missing_file() {
        let page = demo();
        let wanted = [
            LockedFile {
                filename: "demo-1.0.tar.gz".into(),
                hashes: vec![sha("s10")],
            },
            LockedFile {
                filename: "demo-1.0-py3-none-any.whl".into(),
                hashes: vec![sha("bad")],
            },
            LockedFile {
                filename: "demo-9.9.tar.gz".into(),
                hashes: vec![],
            },
        ];
        let (chosen, problems) = locked(&page, &wanted);
        assert_eq!(names(&chosen), ["demo-1.0.tar.gz"]);
        assert_eq!(
            problems,
            [
                "hash mismatch for demo-1.0-py3-none-any.whl: the lock file says sha256:bad, the index sha256:a10",
                "demo-9.9.tar.gz is not on the index",
            ]
        );
    }

    #[test]
    fn a_requirement_takes_the_newest_final_release_and_skips_yanked_files() {
        let page = demo();
        let chosen = requirement(&page, "demo", ">=1", &[], &Filters::default()).unwrap();
        assert_eq!(
            names(&chosen),
            [
                "demo-2.0.tar.gz",
                "demo-2.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                "demo-2.0-cp312-cp312-win_amd64.whl",
                "demo-2.0-cp39-abi3-macosx_11_0_arm64.whl",
            ]
        );
        // An exact pin takes a yanked file (PEP 592); asking for a pre-release takes it.
        let pinned = requirement(&page, "demo", "==2.1", &[], &Filters::default()).unwrap();
        assert_eq!(names(&pinned), ["demo-2.1-py3-none-any.whl"]);
        let pre = requirement(&page, "demo", ">=3.0b1", &[], &Filters::default()).unwrap();
        assert_eq!(names(&pre), ["demo-3.0b1-py3-none-any.whl"]);
        assert_eq!(
            requirement(&page, "demo", ">=4", &[], &Filters::default()).unwrap_err(),
            "no file matches '>=4'"
        );
        assert!(requirement(&page, "demo", "=>nonsense", &[], &Filters::default()).is_err());
    }

    #[test]
    fn hashes_narrow_a_requirement_and_an_unknown_one_is_a_mismatch() {
        let page = demo();
        let chosen = requirement(&page, "demo", "", &[sha("s10"), sha("a10")], &Filters::default()).unwrap();
        assert_eq!(names(&chosen), ["demo-1.0.tar.gz", "demo-1.0-py3-none-any.whl"]);
        let err = requirement(
            &page,
            "demo",
            "==1.0",
            &[sha("s10"), sha("0ff")],
            &Filters::default(),
        )
        .unwrap_err();
        assert_eq!(err, "hash mismatch: sha256:0ff matches no file the index lists");
    }

    #[test]
    fn python_version_and_platform_filters_narrow_wheels_but_keep_sdists() {
        let page = demo();
        let linux_312 = Filters {
            python_version: Some(Version::from_str("3.12").unwrap()),
            platforms: vec!["manylinux*_x86_64".into()],
        };
        let chosen = requirement(&page, "demo", "", &[], &linux_312).unwrap();
        assert_eq!(
            names(&chosen),
            [
                "demo-2.0.tar.gz",
                "demo-2.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
            ]
        );
        let mac_313 = Filters {
            python_version: Some(Version::from_str("3.13").unwrap()),
            platforms: vec!["macosx_11_0_arm64".into()],
        };
        let chosen = requirement(&page, "demo", "", &[], &mac_313).unwrap();
        assert_eq!(
            names(&chosen),
            ["demo-2.0.tar.gz", "demo-2.0-cp39-abi3-macosx_11_0_arm64.whl"]
        );
        // requires-python leaves the cp38 wheel out for 3.7 (and its tag would too).
        let py37 = Filters {
            python_version: Some(Version::from_str("3.7").unwrap()),
            platforms: vec![],
        };
        assert!(!py37.admits(&page.files[2]));
        assert!(py37.admits(&page.files[1]), "py3-none-any installs anywhere");
    }

    #[test]
    fn python_tags_follow_pips_compatible_list() {
        let v312 = Version::from_str("3.12").unwrap();
        assert!(python_admits(&v312, "py3", "none"));
        assert!(python_admits(&v312, "py2.py3", "none"));
        assert!(python_admits(&v312, "py36", "none"));
        assert!(!python_admits(&v312, "py313", "none"));
        assert!(python_admits(&v312, "cp312", "cp312"));
        assert!(python_admits(&v312, "cp312", "cp312t"));
        assert!(!python_admits(&v312, "cp311", "cp311"));
        assert!(python_admits(&v312, "cp38", "abi3"));
        assert!(!python_admits(&v312, "pp310", "pypy310_pp73"));
        assert!(!python_admits(&v312, "py2", "none"));
    }

    #[test]
    fn platform_patterns_glob() {
        assert!(glob_matches("manylinux*_x86_64", "manylinux_2_17_x86_64"));
        assert!(glob_matches("manylinux*_x86_64", "manylinux2014_x86_64"));
        assert!(!glob_matches("manylinux*_x86_64", "musllinux_1_1_x86_64"));
        assert!(!glob_matches("manylinux*_x86_64", "manylinux2014_aarch64"));
        assert!(glob_matches("win_amd64", "win_amd64"));
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("a*b*c", "aXbYc"));
        assert!(!glob_matches("a*b*c", "aXc"));
    }
}
