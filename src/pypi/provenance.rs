//! PEP 740 provenance links on the pages the mirror serves. A client must be given an HTTPS URL.
//! Under an https `server.public_url` the mirror serves each file's provenance object itself
//! (`{public_url}simple/{project}/{filename}.provenance`, fetched from the index once), so
//! attestations can be checked offline; otherwise the index's own https link passes through, and
//! a plain-http one (kept from an index served over http) is left off.

use percent_encoding::utf8_percent_encode;
use url::Url;

use super::model::ProjectPage;
use super::render::SEGMENT;

/// What follows a file's name in the mirror's provenance route.
pub const SUFFIX: &str = ".provenance";

/// A project's URL under the mirror's public URL, where its files' provenance is served:
/// `{public_url}simple/{project}/`, or `{public_url}indexes/{index}/simple/{project}/` for the
/// view of one index.
pub fn mirror_base(public_url: &Url, index: Option<&str>, project: &str) -> String {
    let mut base = public_url.as_str().trim_end_matches('/').to_owned();
    if let Some(index) = index {
        base.push_str("/indexes/");
        base.extend(utf8_percent_encode(index, SEGMENT));
    }
    base.push_str("/simple/");
    base.extend(utf8_percent_encode(project, SEGMENT));
    base.push('/');
    base
}

/// Points each file's provenance where clients should fetch it: the mirror's route under
/// `mirror` (a [`mirror_base`]) when given, else the index's own link when it is https (an http
/// one is left off). Returns the index's links it replaced, by file position, for
/// [`restore_upstream`]: the page is rendered with these links, the catalogue records the index's.
pub fn link(page: &mut ProjectPage, mirror: Option<&str>) -> Vec<(usize, String)> {
    let mut replaced = Vec::new();
    for (position, file) in page.files.iter_mut().enumerate() {
        let Some(upstream) = &file.provenance else {
            continue;
        };
        let shown = match mirror {
            Some(base) => Some(format!(
                "{base}{}{SUFFIX}",
                utf8_percent_encode(&file.filename, SEGMENT)
            )),
            None if upstream.starts_with("https://") => continue,
            None => None,
        };
        if let Some(upstream) = std::mem::replace(&mut file.provenance, shown) {
            replaced.push((position, upstream));
        }
    }
    replaced
}

/// Puts back the index's links that [`link`] replaced.
pub fn restore_upstream(page: &mut ProjectPage, replaced: Vec<(usize, String)>) {
    for (position, upstream) in replaced {
        if let Some(file) = page.files.get_mut(position) {
            file.provenance = Some(upstream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pypi::model::{DistFile, PageMeta};

    fn page() -> ProjectPage {
        let with = |filename: &str, provenance: Option<&str>| DistFile {
            provenance: provenance.map(str::to_owned),
            ..DistFile::bare(filename, &format!("https://files.example/{filename}"))
        };
        ProjectPage {
            name: "Demo".into(),
            files: vec![
                with(
                    "demo-1.0+local.tar.gz",
                    Some("https://index.example/integrity/demo/1.0/demo-1.0+local.tar.gz/provenance"),
                ),
                with("demo-1.0-py3-none-any.whl", None),
                with(
                    "demo-2.0.tar.gz",
                    Some("http://127.0.0.1:8080/provenance/demo-2.0"),
                ),
            ],
            versions: None,
            project_status: None,
            meta: PageMeta::default(),
        }
    }

    fn links(page: &ProjectPage) -> Vec<Option<&str>> {
        page.files.iter().map(|f| f.provenance.as_deref()).collect()
    }

    #[test]
    fn the_mirror_serves_every_files_provenance_under_its_public_url() {
        let public = Url::parse("https://mirror.example/pypi/").unwrap();
        let base = mirror_base(&public, None, "demo");
        assert_eq!(base, "https://mirror.example/pypi/simple/demo/");
        let original = page();
        let mut linked = original.clone();
        let replaced = link(&mut linked, Some(&base));
        assert_eq!(
            links(&linked),
            [
                // The same encoding as the file links, which the file route decodes.
                Some("https://mirror.example/pypi/simple/demo/demo-1.0%2Blocal.tar.gz.provenance"),
                None,
                Some("https://mirror.example/pypi/simple/demo/demo-2.0.tar.gz.provenance"),
            ]
        );
        assert_eq!(replaced.len(), 2);
        restore_upstream(&mut linked, replaced);
        assert_eq!(linked, original, "the index's links come back for the catalogue");
    }

    #[test]
    fn a_view_links_its_own_prefix() {
        let public = Url::parse("https://mirror.example").unwrap();
        assert_eq!(
            mirror_base(&public, Some("company"), "demo"),
            "https://mirror.example/indexes/company/simple/demo/"
        );
    }

    #[test]
    fn without_the_mirror_only_https_links_pass_through() {
        let original = page();
        let mut linked = original.clone();
        let replaced = link(&mut linked, None);
        assert_eq!(
            links(&linked),
            [
                Some("https://index.example/integrity/demo/1.0/demo-1.0+local.tar.gz/provenance"),
                None,
                None,
            ]
        );
        assert_eq!(
            replaced,
            [(2, "http://127.0.0.1:8080/provenance/demo-2.0".to_owned())]
        );
        restore_upstream(&mut linked, replaced);
        assert_eq!(linked, original);
    }
}
