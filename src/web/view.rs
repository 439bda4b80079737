//! How figures read on a page: sizes, times, links, version orders, and the ecosystems the UI
//! lists.

use std::cmp::Ordering;
use std::str::FromStr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::ecosystem::Ecosystem;
use crate::storage::browse::ProjectSort;

pub fn size(bytes: u64) -> String {
    bytesize::ByteSize(bytes).display().iec().to_string()
}

/// `ratio` (0..=1) as a percentage with one decimal.
pub fn percent(ratio: f64) -> String {
    format!("{:.1} %", ratio * 100.0)
}

/// A time relative to `now` ("5 min ago", "in 2 h"), both unix seconds.
pub fn relative(at: u64, now: u64) -> String {
    let (delta, past) = if at <= now {
        (now - at, true)
    } else {
        (at - now, false)
    };
    let amount = match delta {
        0..5 => return "just now".into(),
        5..60 => format!("{delta} s"),
        60..3_600 => format!("{} min", delta / 60),
        3_600..172_800 => format!("{} h", delta / 3_600),
        _ => format!("{} days", delta / 86_400),
    };
    if past {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

/// An absolute UTC time, to the minute.
pub fn timestamp(at: u64) -> String {
    let text = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(at))
        .to_string();
    // 2026-11-23T14:08:00Z → 2026-11-23 14:08 UTC
    match text.get(..16) {
        Some(minute) => format!("{} UTC", minute.replace('T', " ")),
        None => text,
    }
}

/// Everything but RFC 3986's unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn encode(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

/// `/packages` for an ecosystem, with a search, a sort and a page (1-based); defaults are left
/// out.
pub fn packages_href(
    ecosystem: Ecosystem,
    search: &str,
    sort: Option<ProjectSort>,
    page: Option<u64>,
) -> String {
    let mut query = Vec::new();
    if ecosystem != Ecosystem::Pypi {
        query.push(format!("ecosystem={}", ecosystem.as_str()));
    }
    if !search.is_empty() {
        query.push(format!("q={}", encode(search)));
    }
    if let Some(sort) = sort.filter(|s| *s != ProjectSort::Name) {
        query.push(format!("sort={}", sort.as_str()));
    }
    if let Some(page) = page.filter(|p| *p > 1) {
        query.push(format!("page={page}"));
    }
    if query.is_empty() {
        "/packages".into()
    } else {
        format!("/packages?{}", query.join("&"))
    }
}

pub fn project_href(ecosystem: &str, name: &str) -> String {
    format!("/packages/{}/{}", encode(ecosystem), encode(name))
}

/// A file through the mirror's Simple API.
pub fn file_href(project: &str, filename: &str) -> String {
    format!("/simple/{}/{}", encode(project), encode(filename))
}

/// RFC 3986's unreserved characters and `+`, which SemVer build metadata uses
/// (`1.0.0+build.5`).
const TARBALL_FILE: &AsciiSet = &COMPONENT.remove(b'+');

/// A hex release's tarball through the mirror's hex repository. `+` stays as it is: it is valid
/// in a path, hex clients send it so, and the hex routes read the path without decoding it.
pub fn hex_tarball_href(filename: &str) -> String {
    format!("/hex/tarballs/{}", utf8_percent_encode(filename, TARBALL_FILE))
}

/// A hosted release's tarball in its repository (see [`hex_tarball_href`]).
pub fn hosted_hex_tarball_href(repository: &str, filename: &str) -> String {
    format!(
        "/hex/repos/{}/tarballs/{}",
        encode(repository),
        utf8_percent_encode(filename, TARBALL_FILE)
    )
}

/// An RFC 3339 time (`2024-01-01T00:00:00Z`) as [`timestamp`] shows times; text that does not
/// parse is shown as it is.
pub fn rfc3339_timestamp(text: &str) -> String {
    humantime::parse_rfc3339_weak(text)
        .ok()
        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or_else(|| text.to_owned(), |since| timestamp(since.as_secs()))
}

/// Orders hex versions newest first by SemVer 2.0 precedence (a pre-release sorts below its
/// release, numeric identifiers compare as numbers; build metadata only breaks ties); strings
/// that are not SemVer versions come after every version, in reverse text order.
pub fn semver_newest_first(a: &str, b: &str) -> Ordering {
    match (semver::Version::parse(a), semver::Version::parse(b)) {
        (Ok(a), Ok(b)) => b.cmp(&a),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => b.cmp(a),
    }
}

/// Whether a hex version is a SemVer pre-release (`2.0.0-rc.1`).
pub fn is_prerelease(version: &str) -> bool {
    semver::Version::parse(version).is_ok_and(|v| !v.pre.is_empty())
}

/// Orders version strings newest first by PEP 440; strings that are not PEP 440 versions come
/// after every version, in reverse text order.
pub fn newest_first(a: &str, b: &str) -> Ordering {
    match (pep440_rs::Version::from_str(a), pep440_rs::Version::from_str(b)) {
        (Ok(a), Ok(b)) => b.cmp(&a),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => b.cmp(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_by_pep_440_newest_first() {
        let mut versions = vec![
            "1.0",
            "1.10",
            "1.9",
            "2.0rc1",
            "2.0",
            "1.0.post1",
            "2.0.dev3",
            "weird",
            "1!0.1",
        ];
        versions.sort_by(|a, b| newest_first(a, b));
        assert_eq!(
            versions,
            [
                "1!0.1",
                "2.0",
                "2.0rc1",
                "2.0.dev3",
                "1.10",
                "1.9",
                "1.0.post1",
                "1.0",
                "weird"
            ]
        );
    }

    #[test]
    fn figures_read_well() {
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(relative(100, 100), "just now");
        assert_eq!(relative(40, 100), "1 min ago");
        assert_eq!(relative(100 + 7_200, 100), "in 2 h");
        assert_eq!(timestamp(0), "1970-01-01 00:00 UTC");
        assert_eq!(percent(0.5), "50.0 %");
    }

    #[test]
    fn hex_versions_sort_by_semver_newest_first() {
        let mut versions = vec![
            "1.0.0",
            "1.10.0",
            "1.2.0",
            "2.0.0-rc.1",
            "2.0.0",
            "2.0.0-rc.1+build.5",
            "2.0.0-alpha",
            "2.0.0-alpha.1",
            "2.0.0-rc.10",
            "2.0.0-rc.2",
            "0.9.0",
            "not-semver",
            "1.0",
        ];
        versions.sort_by(|a, b| semver_newest_first(a, b));
        assert_eq!(
            versions,
            [
                "2.0.0",
                "2.0.0-rc.10",
                "2.0.0-rc.2",
                // Same precedence; build metadata only breaks the tie.
                "2.0.0-rc.1+build.5",
                "2.0.0-rc.1",
                "2.0.0-alpha.1",
                "2.0.0-alpha",
                "1.10.0",
                "1.2.0",
                "1.0.0",
                "0.9.0",
                // Not SemVer: last, in reverse text order.
                "not-semver",
                "1.0",
            ]
        );
        assert!(is_prerelease("2.0.0-rc.1+build.5"));
        assert!(!is_prerelease("2.0.0+build.5"));
        assert!(!is_prerelease("weird"));
    }

    #[test]
    fn published_times_read_like_other_times() {
        assert_eq!(rfc3339_timestamp("2024-01-01T00:00:00Z"), "2024-01-01 00:00 UTC");
        assert_eq!(rfc3339_timestamp("2024-03-05T17:45:59Z"), "2024-03-05 17:45 UTC");
        assert_eq!(rfc3339_timestamp("yesterday"), "yesterday");
    }

    #[test]
    fn links_encode_what_they_carry() {
        assert_eq!(packages_href(Ecosystem::Pypi, "", None, None), "/packages");
        assert_eq!(
            packages_href(Ecosystem::Pypi, "a b&c", Some(ProjectSort::CachedSize), Some(3)),
            "/packages?q=a%20b%26c&sort=size&page=3"
        );
        assert_eq!(
            packages_href(Ecosystem::Hex, "", None, None),
            "/packages?ecosystem=hex"
        );
        assert_eq!(
            packages_href(Ecosystem::Hex, "my_app", Some(ProjectSort::LastAccess), Some(2)),
            "/packages?ecosystem=hex&q=my_app&sort=last_access&page=2"
        );
        assert_eq!(project_href("pypi", "my-pkg"), "/packages/pypi/my-pkg");
        assert_eq!(project_href("hex", "my_app"), "/packages/hex/my_app");
        assert_eq!(
            hex_tarball_href("my_app-2.0.0-rc.1+build.5.tar"),
            "/hex/tarballs/my_app-2.0.0-rc.1+build.5.tar"
        );
    }
}
