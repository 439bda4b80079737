//! Several upstream indexes (the main one first, then the extra ones) seen as one.

use std::collections::HashSet;

use super::model::{PageMeta, ProjectList, ProjectPage};
use super::name::normalize;
use super::parse_api_version;
use super::render::derived_versions;

/// Page metadata of several indexes: the first known serial and tracks, every alternate location,
/// and the lowest api-version (an index that advertises none counts as 1.0), since the merged page
/// can promise only what every part of it keeps.
fn merge_meta(metas: Vec<PageMeta>) -> PageMeta {
    let mut merged = PageMeta::default();
    let mut lowest: Option<(u64, u64)> = None;
    for meta in metas {
        let version = meta
            .api_version
            .as_deref()
            .and_then(parse_api_version)
            .unwrap_or((1, 0));
        if lowest.is_none_or(|lowest| version < lowest) {
            lowest = Some(version);
            merged.api_version = meta.api_version;
        }
        merged.last_serial = merged.last_serial.or(meta.last_serial);
        if merged.tracks.is_empty() {
            merged.tracks = meta.tracks;
        }
        for location in meta.alternate_locations {
            if !merged.alternate_locations.contains(&location) {
                merged.alternate_locations.push(location);
            }
        }
    }
    merged
}

/// One project page from the pages of several indexes, in index order (main first). A file keeps
/// the first index that lists its filename. `versions` is the union, first seen first; a page
/// without them contributes the versions of its filenames, so that the union is right.
pub fn merge_projects(pages: Vec<ProjectPage>) -> Option<ProjectPage> {
    let mut pages = pages.into_iter();
    let first = pages.next()?;
    let mut merged = ProjectPage {
        name: String::new(),
        files: Vec::with_capacity(first.files.len()),
        versions: None,
        project_status: None,
        meta: PageMeta::default(),
    };
    let mut metas = Vec::new();
    let mut filenames = HashSet::new();
    let mut versions_seen = HashSet::new();
    for mut page in std::iter::once(first).chain(pages) {
        let versions = match page.versions.take() {
            Some(versions) => Some(versions),
            None => Some(derived_versions(&page).0).filter(|v| !v.is_empty()),
        };
        if let Some(versions) = versions {
            let merged_versions = merged.versions.get_or_insert_default();
            for version in versions {
                if versions_seen.insert(version.clone()) {
                    merged_versions.push(version);
                }
            }
        }
        if merged.name.is_empty() {
            merged.name = page.name;
        }
        merged.project_status = merged.project_status.or(page.project_status);
        for file in page.files {
            if filenames.insert(file.filename.clone()) {
                merged.files.push(file);
            }
        }
        metas.push(page.meta);
    }
    merged.meta = merge_meta(metas);
    Some(merged)
}

/// One project list from several indexes: the union by normalized name, the first spelling (in
/// index order, main first) kept.
pub fn merge_lists(lists: Vec<ProjectList>) -> ProjectList {
    let mut seen = HashSet::new();
    let mut projects = Vec::new();
    let mut metas = Vec::with_capacity(lists.len());
    for list in lists {
        for name in list.projects {
            if seen.insert(normalize(&name)) {
                projects.push(name);
            }
        }
        metas.push(list.meta);
    }
    ProjectList {
        projects,
        meta: merge_meta(metas),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pypi::model::{DistFile, ProjectStatus};
    use std::collections::BTreeMap;

    fn file(filename: &str, index: &str) -> DistFile {
        DistFile {
            filename: filename.into(),
            url: format!("https://{index}/{filename}"),
            hashes: BTreeMap::new(),
            requires_python: None,
            yanked: None,
            core_metadata: None,
            gpg_sig: None,
            size: None,
            upload_time: None,
            provenance: None,
        }
    }

    fn page(name: &str, files: Vec<DistFile>, versions: Option<&[&str]>) -> ProjectPage {
        ProjectPage {
            name: name.into(),
            files,
            versions: versions.map(|v| v.iter().map(|s| s.to_string()).collect()),
            project_status: None,
            meta: PageMeta::default(),
        }
    }

    #[test]
    fn empty_input_is_none() {
        assert_eq!(merge_projects(vec![]), None);
    }

    #[test]
    fn main_index_files_win_and_come_first() {
        let main = page(
            "Foo",
            vec![
                file("foo-1.0.tar.gz", "main.example"),
                file("foo-1.1.tar.gz", "main.example"),
            ],
            Some(&["1.0", "1.1"]),
        );
        let extra = page(
            "foo",
            vec![
                file("foo-1.1.tar.gz", "extra.example"),
                file("foo-0.9.tar.gz", "extra.example"),
            ],
            Some(&["0.9", "1.1", "1.2"]),
        );
        let merged = merge_projects(vec![main, extra]).unwrap();
        assert_eq!(merged.name, "Foo");
        let urls: Vec<&str> = merged.files.iter().map(|f| f.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://main.example/foo-1.0.tar.gz",
                "https://main.example/foo-1.1.tar.gz",
                "https://extra.example/foo-0.9.tar.gz"
            ]
        );
        assert_eq!(merged.versions.unwrap(), ["1.0", "1.1", "0.9", "1.2"]);
    }

    #[test]
    fn versions_are_derived_for_pages_without_them() {
        let html_main = page("foo", vec![file("foo-2.0.tar.gz", "main.example")], None);
        let json_extra = page("foo", vec![], Some(&["1.0", "2.0"]));
        let merged = merge_projects(vec![html_main, json_extra]).unwrap();
        assert_eq!(merged.versions.unwrap(), ["2.0", "1.0"]);

        let only_html = page("foo", vec![file("foo-2.0-py3-none-any.whl", "m")], None);
        assert_eq!(
            merge_projects(vec![only_html]).unwrap().versions.unwrap(),
            ["2.0"]
        );
        let nothing_known = page("foo", vec![], None);
        assert_eq!(merge_projects(vec![nothing_known]).unwrap().versions, None);
    }

    #[test]
    fn page_level_fields() {
        let status = |s: &str| {
            Some(ProjectStatus {
                status: s.into(),
                reason: None,
            })
        };
        let meta = |version: Option<&str>, serial: Option<u64>, tracks: &[&str], alt: &[&str]| PageMeta {
            api_version: version.map(Into::into),
            last_serial: serial,
            tracks: tracks.iter().map(|s| s.to_string()).collect(),
            alternate_locations: alt.iter().map(|s| s.to_string()).collect(),
        };
        let mut a = page("foo", vec![], Some(&[]));
        a.meta = meta(Some("1.3"), None, &[], &["https://a.example/"]);
        let mut b = page("foo", vec![], Some(&[]));
        b.meta = meta(
            Some("1.1"),
            Some(7),
            &["https://t.example/"],
            &["https://b.example/", "https://a.example/"],
        );
        b.project_status = status("archived");
        let mut c = page("foo", vec![], Some(&[]));
        c.meta = meta(Some("1.2"), Some(8), &["https://u.example/"], &[]);
        c.project_status = status("quarantined");
        let merged = merge_projects(vec![a.clone(), b.clone(), c.clone()]).unwrap();
        assert_eq!(merged.project_status, status("archived"));
        assert_eq!(
            merged.meta,
            meta(
                Some("1.1"),
                Some(7),
                &["https://t.example/"],
                &["https://a.example/", "https://b.example/"]
            )
        );

        // An index that advertises nothing counts as 1.0, the lowest.
        let mut d = page("foo", vec![], Some(&[]));
        d.meta = meta(None, None, &[], &[]);
        assert_eq!(merge_projects(vec![a, d, b, c]).unwrap().meta.api_version, None);
    }

    #[test]
    fn lists_union_by_normalized_name() {
        let list = |names: &[&str], version: Option<&str>| ProjectList {
            projects: names.iter().map(|s| s.to_string()).collect(),
            meta: PageMeta {
                api_version: version.map(Into::into),
                ..PageMeta::default()
            },
        };
        let merged = merge_lists(vec![
            list(&["Foo.Bar", "baz"], Some("1.4")),
            list(&["foo_bar", "qux", "BAZ", "zed"], Some("1.1")),
        ]);
        assert_eq!(merged.projects, ["Foo.Bar", "baz", "qux", "zed"]);
        assert_eq!(merged.meta.api_version.as_deref(), Some("1.1"));
        assert_eq!(merge_lists(vec![]), ProjectList::default());
    }
}
