//! The release policy applied to a project page: held-back files left off, versions whose files
//! are all held back left out of `versions`, a denied project quarantined (PEP 792), and unknown
//! upload times filled in with the time the mirror first saw the file.

use std::collections::HashMap;

use super::model::{ProjectPage, ProjectStatus};
use super::name::version_from_filename;
use crate::ecosystem::Ecosystem;
use crate::policy::{Check, Policy, Release, format_time, parse_time};

/// A page as the policy lets it be served.
pub struct Applied {
    /// The page to render, when the policy changed anything.
    pub page: Option<ProjectPage>,
    /// When a held-back file becomes eligible: the page must be rendered again then.
    pub next_change: Option<u64>,
    /// The files held back, and the check that held each.
    pub held: Vec<(String, Check)>,
}

/// Applies `policy` to the page of `project` (normalized) at `now`; `first_seen` has when the
/// mirror first listed each file (a file missing from it is seen now).
pub fn apply(
    page: &ProjectPage,
    project: &str,
    policy: &Policy,
    first_seen: &HashMap<String, u64>,
    now: u64,
) -> Applied {
    if !policy.is_active() {
        return Applied {
            page: None,
            next_change: None,
            held: Vec::new(),
        };
    }
    if let Some(rule) = policy.denied_project(Ecosystem::Pypi, project) {
        // PEP 792: a quarantined project lists no files.
        let mut quarantined = page.clone();
        let held = quarantined
            .files
            .drain(..)
            .map(|f| (f.filename, Check::Rule))
            .collect();
        quarantined.versions = quarantined.versions.map(|_| Vec::new());
        quarantined.project_status = Some(ProjectStatus {
            status: "quarantined".into(),
            reason: Some(if rule.reason.is_empty() {
                format!("held back by the mirror's policy rule \"{rule}\"")
            } else {
                rule.reason.clone()
            }),
        });
        return Applied {
            page: Some(quarantined),
            next_change: None,
            held,
        };
    }
    let fill = policy.fills_upload_time();
    let mut changed = false;
    let mut next_change: Option<u64> = None;
    let mut held_files = Vec::new();
    // Per file: kept or not, and its filled-in upload time.
    let mut verdicts = Vec::with_capacity(page.files.len());
    for file in &page.files {
        let version = version_from_filename(&file.filename, project);
        let uploaded_at = file.upload_time.as_deref().and_then(parse_time);
        let release = Release {
            ecosystem: Ecosystem::Pypi,
            project,
            version: version.as_deref(),
            uploaded_at,
            first_seen: first_seen.get(&file.filename).copied().unwrap_or(now),
        };
        let held = match policy.judge(&release, now) {
            Ok(()) => false,
            Err(hold) => {
                if let Some(at) = hold.eligible_at {
                    next_change = Some(next_change.map_or(at, |next| next.min(at)));
                }
                held_files.push((file.filename.clone(), hold.check));
                true
            }
        };
        let filled = (fill && uploaded_at.is_none()).then(|| format_time(release.first_seen));
        changed |= held || filled.is_some();
        verdicts.push((held, version, filled));
    }
    if !changed {
        return Applied {
            page: None,
            next_change,
            held: held_files,
        };
    }
    let mut served = ProjectPage {
        name: page.name.clone(),
        files: Vec::with_capacity(page.files.len()),
        versions: page.versions.clone(),
        project_status: page.project_status.clone(),
        meta: page.meta.clone(),
    };
    // Versions whose every file is held back leave `versions`; versions without files stay.
    let mut versions_left: HashMap<&str, bool> = HashMap::new();
    for (file, (held, version, filled)) in page.files.iter().zip(&verdicts) {
        if let Some(version) = version {
            *versions_left.entry(version.as_str()).or_default() |= !held;
        }
        if !held {
            let mut file = file.clone();
            if let Some(time) = filled {
                file.upload_time = Some(time.clone());
            }
            served.files.push(file);
        }
    }
    if let Some(versions) = &mut served.versions {
        versions.retain(|v| versions_left.get(v.as_str()).copied().unwrap_or(true));
    }
    Applied {
        page: Some(served),
        next_change,
        held: held_files,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{PolicyConfig, UnknownUploadTime};
    use crate::pypi::model::{DistFile, PageMeta};

    const NOW: u64 = 1_800_000_000;

    fn file(filename: &str, uploaded: Option<u64>) -> DistFile {
        DistFile {
            upload_time: uploaded.map(format_time),
            ..DistFile::bare(filename, &format!("https://files.example/{filename}"))
        }
    }

    fn page(files: Vec<DistFile>, versions: &[&str]) -> ProjectPage {
        ProjectPage {
            name: "foo".into(),
            files,
            versions: Some(versions.iter().map(|v| (*v).to_owned()).collect()),
            project_status: None,
            meta: PageMeta::default(),
        }
    }

    fn cooldown(days: u64, rules: &[&str]) -> Policy {
        Policy::new(PolicyConfig {
            min_release_age: Duration::from_secs(days * 86_400),
            exclude_newer: None,
            unknown_upload_time: UnknownUploadTime::FirstSeen,
            rules: rules
                .iter()
                .map(|r| serde_json::from_value(serde_json::Value::String((*r).to_owned())).unwrap())
                .collect(),
        })
    }

    #[test]
    fn held_files_leave_the_page_and_a_version_without_files_left_leaves_versions() {
        let files = vec![
            file("foo-1.0-py3-none-any.whl", Some(NOW - 30 * 86_400)),
            file("foo-2.0-py3-none-any.whl", Some(NOW - 3600)),
            file("foo-2.0.tar.gz", Some(NOW - 3600)),
        ];
        let original = page(files, &["0.9", "1.0", "2.0"]);
        let applied = apply(&original, "foo", &cooldown(3, &[]), &HashMap::new(), NOW);
        let served = applied.page.unwrap();
        let names: Vec<&str> = served.files.iter().map(|f| f.filename.as_str()).collect();
        assert_eq!(names, ["foo-1.0-py3-none-any.whl"]);
        // 0.9 has no files at all: it stays, as upstream listed it.
        assert_eq!(served.versions, Some(vec!["0.9".to_owned(), "1.0".to_owned()]));
        assert_eq!(applied.next_change, Some(NOW - 3600 + 3 * 86_400));
        let idle = apply(&original, "foo", &cooldown(0, &[]), &HashMap::new(), NOW);
        assert!(
            idle.page.is_none() && idle.next_change.is_none(),
            "no policy, no copy"
        );
    }

    #[test]
    fn unknown_upload_times_are_filled_in_and_a_denied_project_is_quarantined() {
        let original = page(vec![file("foo-1.0.tar.gz", None)], &[]);
        let seen = HashMap::from([("foo-1.0.tar.gz".to_owned(), NOW - 10 * 86_400)]);
        let served = apply(&original, "foo", &cooldown(3, &[]), &seen, NOW)
            .page
            .unwrap();
        assert_eq!(
            served.files[0].upload_time.as_deref(),
            Some(format_time(NOW - 10 * 86_400).as_str())
        );

        let denied = apply(
            &original,
            "foo",
            &cooldown(0, &["deny pypi fo*; typosquat"]),
            &seen,
            NOW,
        );
        let served = denied.page.unwrap();
        assert!(served.files.is_empty());
        let status = served.project_status.unwrap();
        assert_eq!(
            (status.status.as_str(), status.reason.as_deref()),
            ("quarantined", Some("typosquat"))
        );
    }
}
