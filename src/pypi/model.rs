//! The one in-memory model of the Simple API that every upstream format is parsed into and every
//! output format is rendered from. Fields are kept exactly as upstream gave them (no invented values):
//! a mirror that drops or fabricates a field breaks resolvers that rely on it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One distribution file of a project, as listed on a project page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistFile {
    pub filename: String,
    /// Absolute upstream URL (relative hrefs are resolved against the page URL when parsed).
    pub url: String,
    /// Hash name (lower-case hashlib name) to lower-case hex digest. Possibly empty.
    pub hashes: BTreeMap<String, String>,
    pub requires_python: Option<String>,
    /// `None`: not yanked. `Some("")`: yanked without a reason. `Some(r)`: yanked with reason `r`.
    pub yanked: Option<String>,
    /// PEP 658/714. `None`: no metadata file. `Some(empty map)`: available, hash unknown (`true`).
    pub core_metadata: Option<BTreeMap<String, String>>,
    /// `data-gpg-sig` / `gpg-sig`.
    pub gpg_sig: Option<bool>,
    /// PEP 700 size in bytes.
    pub size: Option<u64>,
    /// PEP 700 upload time, `yyyy-mm-ddThh:mm:ss[.ffffff]Z` exactly as upstream sent it.
    pub upload_time: Option<String>,
    /// PEP 740 provenance URL (absolute https), if any.
    pub provenance: Option<String>,
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
