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

/// One project page from the pages of several indexes, in index order (main first), with the
/// position in `pages` each of its files came from. A file keeps the first index that lists its
/// filename. `versions` is the union, first seen first; a page without them contributes the
/// versions of its filenames, so that the union is right. The first page's allocations are reused
/// and no filename is copied: a page can list hundreds of thousands of files.
pub fn merge_projects(pages: Vec<ProjectPage>) -> Option<(ProjectPage, Vec<usize>)> {
    fn versions_of(page: &mut ProjectPage) -> Option<Vec<String>> {
        page.versions
            .take()
            .or_else(|| Some(derived_versions(page).0).filter(|v| !v.is_empty()))
    }
    let mut pages = pages.into_iter();
    let mut merged = pages.next()?;
    let mut origins = vec![0; merged.files.len()];
    let mut versions = versions_of(&mut merged);
    let mut metas = vec![std::mem::take(&mut merged.meta)];
    for (position, mut page) in pages.enumerate() {
        if let Some(more) = versions_of(&mut page) {
            versions.get_or_insert_default().extend(more);
        }
        if merged.name.is_empty() {
            merged.name = page.name;
        }
        merged.project_status = merged.project_status.or(page.project_status);
        origins.extend(std::iter::repeat_n(position + 1, page.files.len()));
        merged.files.append(&mut page.files);
        metas.push(page.meta);
    }
    let first = first_of_each(&merged.files, |file| &file.filename);
    keep_marked(&mut merged.files, &first);
    keep_marked(&mut origins, &first);
    if let Some(versions) = &mut versions {
        let first = first_of_each(versions, String::as_str);
        keep_marked(versions, &first);
    }
    merged.versions = versions;
    merged.meta = merge_meta(metas);
    Some((merged, origins))
}

/// Marks the first item of each key (by position), found by sorting positions rather than by
/// hashing copies of the keys.
pub(crate) fn first_of_each<T>(items: &[T], key: impl Fn(&T) -> &str) -> Vec<bool> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_unstable_by(|&a, &b| key(&items[a]).cmp(key(&items[b])).then(a.cmp(&b)));
    let mut first = vec![false; items.len()];
    let mut previous: Option<&str> = None;
    for position in order {
        let key = key(&items[position]);
        if previous != Some(key) {
            first[position] = true;
            previous = Some(key);
        }
    }
    first
}

/// Keeps the items whose flag is set, in order.
pub(crate) fn keep_marked<T>(items: &mut Vec<T>, keep: &[bool]) {
    let mut flags = keep.iter();
    items.retain(|_| flags.next().copied().unwrap_or(false));
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

    fn file(filename: &str, index: &str) -> DistFile {
        DistFile::bare(filename, &format!("https://{index}/{filename}"))
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
    fn a_page_listing_a_file_twice_keeps_the_first() {
        let listed_twice = page(
            "foo",
            vec![
                file("foo-1.0.tar.gz", "first.example"),
                file("foo-0.9.tar.gz", "first.example"),
                file("foo-1.0.tar.gz", "second.example"),
            ],
            Some(&["1.0", "0.9", "1.0"]),
        );
        let (merged, origins) = merge_projects(vec![listed_twice]).unwrap();
        let urls: Vec<&str> = merged.files.iter().map(|f| f.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://first.example/foo-1.0.tar.gz",
                "https://first.example/foo-0.9.tar.gz"
            ]
        );
        assert_eq!(origins, [0, 0]);
        assert_eq!(merged.versions.unwrap(), ["1.0", "0.9"]);
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
        let (merged, origins) = merge_projects(vec![main, extra]).unwrap();
        assert_eq!(merged.name, "Foo");
        assert_eq!(origins, [0, 0, 1], "the page each file came from");
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
        let merged = merge_projects(vec![html_main, json_extra]).unwrap().0;
        assert_eq!(merged.versions.unwrap(), ["2.0", "1.0"]);

        let only_html = page("foo", vec![file("foo-2.0-py3-none-any.whl", "m")], None);
        assert_eq!(
            merge_projects(vec![only_html]).unwrap().0.versions.unwrap(),
            ["2.0"]
        );
        let nothing_known = page("foo", vec![], None);
        assert_eq!(merge_projects(vec![nothing_known]).unwrap().0.versions, None);
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
        let merged = merge_projects(vec![a.clone(), b.clone(), c.clone()]).unwrap().0;
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
        assert_eq!(merge_projects(vec![a, d, b, c]).unwrap().0.meta.api_version, None);
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
