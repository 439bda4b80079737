//! What the HTML and JSON parsers share: the error type and the rules both apply to a page.

use crate::pypi::model::Hashes;

use thiserror::Error;
use url::Url;

use super::parse_api_version;

/// A page as read, with the entries that were left out because they were malformed: one bad entry
/// costs that entry, never the page (real indexes send odd entries; the rest is still good).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<T> {
    pub page: T,
    /// Why each left-out entry was dropped, naming it (`files[3]: no \`url\``).
    pub dropped: Vec<String>,
}

/// Why an upstream page could not be read.
#[derive(Debug, Error)]
pub enum ParseError {
    #[error("the body is not UTF-8 (invalid byte at offset {valid_up_to})")]
    NotUtf8 { valid_up_to: usize },
    #[error("invalid Simple API JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the project page has no `name`")]
    MissingName,
    #[error("the project page has no `files` array")]
    MissingFiles,
    #[error("the project list has no `projects` array")]
    MissingProjects,
    #[error("`files` is not an array")]
    FilesNotArray,
    #[error("`projects` is not an array")]
    ProjectsNotArray,
    #[error("unsupported api-version {0:?}: only major version 1 is understood (PEP 629)")]
    UnsupportedApiVersion(String),
}

/// The body as text, without a byte-order mark.
pub(crate) fn body_str(body: &[u8]) -> Result<&str, ParseError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    std::str::from_utf8(body).map_err(|e| ParseError::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })
}

/// PEP 629: a client must refuse a major version it does not know. An unparseable version is let
/// through (and later counts as 1.0): refusing it would lose a page over a typo.
pub(crate) fn check_api_version(version: &str) -> Result<(), ParseError> {
    match parse_api_version(version) {
        Some((major, _)) if major != 1 => Err(ParseError::UnsupportedApiVersion(version.to_owned())),
        _ => Ok(()),
    }
}

fn is_hash_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_hex(digest: &str) -> bool {
    !digest.is_empty() && digest.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A hash as the model stores it (lower-case name and hex), or `None` when it is not a hex digest
/// under a plausible hashlib name: such a value could not be checked, nor put in a URL fragment.
pub(crate) fn normalize_hash(mut name: String, mut digest: String) -> Option<(String, String)> {
    if !is_hash_name(&name) || !is_hex(&digest) {
        return None;
    }
    name.make_ascii_lowercase();
    digest.make_ascii_lowercase();
    Some((name, digest))
}

/// [`normalize_hash`] over a map, which is kept as it is when already normal (the usual case).
pub(crate) fn normalize_hashes(hashes: Hashes) -> Hashes {
    let is_normal = |name: &str, digest: &str| {
        !name.is_empty()
            && !digest.is_empty()
            && name
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
            && digest.bytes().all(|b| matches!(b, b'a'..=b'f' | b'0'..=b'9'))
    };
    if hashes.iter().all(|(name, digest)| is_normal(name, digest)) {
        return hashes;
    }
    hashes
        .into_iter()
        .filter_map(|(name, digest)| normalize_hash(name, digest))
        .collect()
}

/// The hashes pip checks a download against (hashlib's guaranteed ones), with their digest length
/// in hex digits.
const CHECKED_HASHES: [(&str, usize); 6] = [
    ("md5", 32),
    ("sha1", 40),
    ("sha224", 56),
    ("sha256", 64),
    ("sha384", 96),
    ("sha512", 128),
];

/// A file's hash as the model keeps it, `None` when it is not one (left out, as before), or an
/// error when it is under a name pip checks but is no digest of that kind: pip refuses such a
/// file, and serving it without the hash would serve it unverified, so the entry is invalid.
pub(crate) fn file_hash(name: String, digest: String) -> Result<Option<(String, String)>, String> {
    let checked = CHECKED_HASHES
        .iter()
        .find(|(known, _)| name.eq_ignore_ascii_case(known));
    match checked {
        Some((known, len)) if digest.len() != *len || !is_hex(&digest) => {
            Err(format!("invalid {known} hash {digest:?}"))
        }
        _ => Ok(normalize_hash(name, digest)),
    }
}

/// [`file_hash`] over a file's map of hashes.
pub(crate) fn file_hashes(hashes: Hashes) -> Result<Hashes, String> {
    hashes
        .into_iter()
        .filter_map(|(name, digest)| file_hash(name, digest).transpose())
        .collect()
}

/// Removes the fragment from a file URL, returning it as a hash when it is
/// `#<hashname>=<digest>` ([`file_hash`] says which are errors).
pub(crate) fn take_fragment_hash(url: &mut Url) -> Result<Option<(String, String)>, String> {
    let hash = match url.fragment().and_then(|f| f.split_once('=')) {
        Some((name, digest)) => file_hash(name.to_owned(), digest.to_owned())?,
        None => None,
    };
    url.set_fragment(None);
    Ok(hash)
}

/// Only files reachable over HTTP(S) are listed: any other scheme (`file:`, `javascript:`) from an
/// upstream would be a way to make the mirror read or link something it must not.
pub(crate) fn is_fetchable(url: &Url) -> bool {
    matches!(url.scheme(), "https" | "http")
}

/// PEP 740 provenance resolved against `base`, kept when it is HTTPS, as clients must be given,
/// or plain HTTP on the origin of the page itself (`page_url`: an index served over HTTP, as
/// inside a network). The mirror never passes the latter on: it serves it at its own HTTPS URL,
/// or leaves it off (`pypi::provenance`).
pub(crate) fn provenance_url(base: &Url, page_url: &Url, href: &str) -> Option<String> {
    base.join(href)
        .ok()
        .filter(|url| {
            url.scheme() == "https" || (url.scheme() == "http" && url.origin() == page_url.origin())
        })
        .map(String::from)
}

/// An empty specifier constrains nothing: it is the same as none.
pub(crate) fn non_empty(value: String) -> Option<String> {
    (!value.trim().is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_normalized_or_dropped() {
        let h = |n: &str, d: &str| normalize_hash(n.to_owned(), d.to_owned());
        assert_eq!(
            h("SHA256", "ABCdef01"),
            Some(("sha256".into(), "abcdef01".into()))
        );
        assert_eq!(h("blake2b_256", "00"), Some(("blake2b_256".into(), "00".into())));
        assert_eq!(h("sha256", "xyz"), None);
        assert_eq!(h("sha256", ""), None);
        assert_eq!(h("", "00"), None);
        assert_eq!(h("sha 256", "00"), None);
        let map = |pairs: &[(&str, &str)]| -> Hashes {
            pairs
                .iter()
                .map(|(n, d)| (n.to_string(), d.to_string()))
                .collect()
        };
        let normal = map(&[("md5", "0a"), ("sha256", "ff")]);
        assert_eq!(normalize_hashes(normal.clone()), normal);
        assert_eq!(
            normalize_hashes(map(&[("MD5", "0A"), ("sha256", "zz")])),
            map(&[("md5", "0a")])
        );
    }

    #[test]
    fn fragments_become_hashes_and_are_stripped() {
        let digest = "AB".repeat(32);
        let mut url = Url::parse(&format!("https://files.example/a.whl#SHA256={digest}")).unwrap();
        assert_eq!(
            take_fragment_hash(&mut url),
            Ok(Some(("sha256".into(), "ab".repeat(32))))
        );
        assert_eq!(url.as_str(), "https://files.example/a.whl");
        let mut url = Url::parse("https://files.example/a.whl#egg=foo").unwrap();
        assert_eq!(take_fragment_hash(&mut url), Ok(None));
        assert_eq!(url.as_str(), "https://files.example/a.whl");
        let mut url = Url::parse("https://files.example/a.whl#sha256=ab12").unwrap();
        assert_eq!(
            take_fragment_hash(&mut url),
            Err("invalid sha256 hash \"ab12\"".into())
        );
    }

    #[test]
    fn checked_hashes_must_be_digests_of_their_kind() {
        let h = |n: &str, d: &str| file_hash(n.to_owned(), d.to_owned());
        assert_eq!(
            h("MD5", &"A".repeat(32)),
            Ok(Some(("md5".into(), "a".repeat(32))))
        );
        assert!(h("md5", &"a".repeat(31)).is_err());
        assert!(h("sha1", &"g".repeat(40)).is_err());
        assert!(h("sha512", &"0".repeat(128)).unwrap().is_some());
        assert_eq!(h("blake2b_256", "zz"), Ok(None), "unchecked: only left out");
        assert_eq!(
            h("blake2b_256", "cd34"),
            Ok(Some(("blake2b_256".into(), "cd34".into())))
        );
    }

    #[test]
    fn provenance_is_https_or_on_an_http_pages_own_origin() {
        let https_page = Url::parse("https://index.example/simple/demo/").unwrap();
        let http_page = Url::parse("http://127.0.0.1:8080/simple/demo/").unwrap();
        let on = |page: &Url, href: &str| provenance_url(page, page, href);
        assert_eq!(
            on(&https_page, "../../p/demo.json").as_deref(),
            Some("https://index.example/p/demo.json")
        );
        assert_eq!(on(&https_page, "http://index.example/p.json"), None, "downgraded");
        assert_eq!(
            on(&http_page, "../../p/demo.json").as_deref(),
            Some("http://127.0.0.1:8080/p/demo.json")
        );
        assert_eq!(
            on(&http_page, "http://127.0.0.1:9090/p.json"),
            None,
            "another port"
        );
        assert_eq!(
            on(&http_page, "http://files.example/p.json"),
            None,
            "another host"
        );
        assert_eq!(
            on(&http_page, "https://files.example/p.json").as_deref(),
            Some("https://files.example/p.json")
        );
        // An HTML page's `<base>` does not make its origin the page's own.
        let base = Url::parse("http://files.example/root/").unwrap();
        assert_eq!(provenance_url(&base, &http_page, "p.json"), None);
        assert_eq!(provenance_url(&base, &https_page, "p.json"), None);
    }

    #[test]
    fn api_versions() {
        assert!(check_api_version("1.0").is_ok());
        assert!(check_api_version("1.4").is_ok());
        assert!(check_api_version("1.99").is_ok());
        assert!(check_api_version("one").is_ok());
        let err = check_api_version("2.0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported api-version \"2.0\": only major version 1 is understood (PEP 629)"
        );
        assert!(check_api_version("0.9").is_err());
    }

    #[test]
    fn bodies_must_be_utf8() {
        assert_eq!(body_str(b"\xEF\xBB\xBF{}").unwrap(), "{}");
        let err = body_str(b"ab\xFFc").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the body is not UTF-8 (invalid byte at offset 2)"
        );
    }
}
