//! The PyPI Simple repository API (PEP 503, 592, 629, 658, 691, 700, 708, 714, 740, 792) as pure
//! protocol logic: names, content negotiation, parsing upstream pages, rendering ours, merging
//! several indexes. Nothing here does I/O.

pub mod hosted;
pub mod merge;
pub mod model;
pub mod name;
pub mod negotiate;
pub mod parse;
pub mod parse_html;
pub mod parse_json;
pub mod policy;
pub mod provenance;
#[cfg(test)]
mod real_pages;
pub mod render;
pub mod wheel;

#[cfg(test)]
mod fuzz;

pub use merge::{merge_lists, merge_projects};
pub use model::{DistFile, PageMeta, ProjectList, ProjectPage, ProjectStatus};
pub use name::{NameError, is_safe_filename, normalize, validate_project_name, version_from_filename};
pub use negotiate::{Format, Negotiated, NotAcceptable, negotiate};
pub use parse::{ParseError, Parsed};
pub use parse_html::{parse_list_html, parse_project_html};
pub use parse_json::{parse_list_json, parse_project_json};
pub use render::{
    api_version, list_api_version, render_list_html, render_list_json, render_project_html,
    render_project_json,
};

/// `(major, minor)` of an advertised api-version (`"1"` is read as 1.0); `None` when unparseable.
pub(crate) fn parse_api_version(version: &str) -> Option<(u64, u64)> {
    let (major, minor) = match version.trim().split_once('.') {
        Some((major, minor)) => (major, minor),
        None => (version.trim(), "0"),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || !digits(minor) {
        return None;
    }
    Some((major.parse().ok()?, minor.parse().ok()?))
}
