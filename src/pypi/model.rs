//! The one in-memory model of the Simple API that every upstream format is parsed into and every
//! output format is rendered from. Fields are kept exactly as upstream gave them (no invented values):
//! a mirror that drops or fabricates a field breaks resolvers that rely on it.

use serde::{Deserialize, Serialize};

/// Hash name to digest, sorted by name: a flat sorted Vec, since a file has one or two hashes and
/// a big page has hundreds of thousands of files (a BTreeMap spends a 544-byte node on each).
pub type Hashes = litemap::LiteMap<String, String>;

/// Writes hashes as a map, also when there are none: litemap writes an empty map as a JSON list.
pub fn hashes_as_map<S: serde::Serializer>(hashes: &Hashes, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_map(hashes.iter())
}

fn optional_hashes_as_map<S: serde::Serializer>(
    hashes: &Option<Hashes>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match hashes {
        Some(hashes) => hashes_as_map(hashes, serializer),
        None => serializer.serialize_none(),
    }
}

/// One distribution file of a project, as listed on a project page. Absent fields are left out of
/// its serialized form (stored snapshots), which is a third smaller for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistFile {
    pub filename: String,
    /// Absolute upstream URL (relative hrefs are resolved against the page URL when parsed).
    pub url: String,
    /// Hash name (lower-case hashlib name) to lower-case hex digest. Possibly empty.
    #[serde(serialize_with = "hashes_as_map")]
    pub hashes: Hashes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_python: Option<String>,
    /// `None`: not yanked. `Some("")`: yanked without a reason. `Some(r)`: yanked with reason `r`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yanked: Option<String>,
    /// PEP 658/714. `None`: no metadata file. `Some(empty map)`: available, hash unknown (`true`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_hashes_as_map"
    )]
    pub core_metadata: Option<Hashes>,
    /// `data-gpg-sig` / `gpg-sig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpg_sig: Option<bool>,
    /// PEP 700 size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// PEP 700 upload time, `yyyy-mm-ddThh:mm:ss[.ffffff]Z` exactly as upstream sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_time: Option<String>,
    /// PEP 740 provenance URL, if any, as the index gave it: absolute https, or http on the origin
    /// of an index page that came over http (never served as such: see `pypi::provenance`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<String>,
}

impl DistFile {
    /// Gives back the spare capacity of the hash maps (a map grown by pushes holds room for four
    /// entries): called on every file a page parser or a stored snapshot produced.
    pub fn shrink_to_fit(&mut self) {
        fn shrink(hashes: &mut Hashes) {
            let mut entries = std::mem::take(hashes).into_tuple_vec();
            entries.shrink_to_fit();
            *hashes = Hashes::from_sorted_store_unchecked(entries);
        }
        shrink(&mut self.hashes);
        if let Some(metadata) = &mut self.core_metadata {
            shrink(metadata);
        }
    }
}

#[cfg(test)]
impl DistFile {
    /// A file with a name and a URL and nothing else known, for tests.
    pub fn bare(filename: &str, url: &str) -> Self {
        Self {
            filename: filename.into(),
            url: url.into(),
            hashes: Hashes::new(),
            requires_python: None,
            yanked: None,
            core_metadata: None,
            gpg_sig: None,
            size: None,
            upload_time: None,
            provenance: None,
        }
    }
}

/// PEP 792 project status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectStatus {
    pub status: String,
    pub reason: Option<String>,
}

/// Page-level metadata shared by project pages and the project list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageMeta {
    /// The api-version the upstream advertised (`meta.api-version` / `pypi:repository-version`).
    pub api_version: Option<String>,
    /// `meta._last-serial` (JSON) or the `X-PyPI-Last-Serial` header.
    pub last_serial: Option<u64>,
    /// PEP 708 `meta.tracks`.
    pub tracks: Vec<String>,
    /// PEP 708 `alternate-locations`.
    pub alternate_locations: Vec<String>,
}

/// A project detail page (`/simple/{project}/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectPage {
    /// The project's name as upstream spelled it (JSON `name`); normalized when upstream gave none.
    pub name: String,
    pub files: Vec<DistFile>,
    /// PEP 700 `versions`; `None` when upstream gave none (HTML upstreams).
    pub versions: Option<Vec<String>>,
    pub project_status: Option<ProjectStatus>,
    pub meta: PageMeta,
}

/// The project list (`/simple/`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectList {
    /// Display names, in upstream order, no two with the same normalized name.
    pub projects: Vec<String>,
    pub meta: PageMeta,
}
