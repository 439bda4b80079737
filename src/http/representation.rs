//! HTTP representation details shared by every cached answer: conditional requests (ETag /
//! If-None-Match) and choosing a pre-compressed form by Accept-Encoding.

use actix_web::HttpRequest;
use actix_web::http::header::{ACCEPT_ENCODING, IF_NONE_MATCH};

/// A stored encoding of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Zstd,
    Gzip,
    Identity,
}

/// The best stored encoding the client accepts: highest q first, then zstd over gzip over
/// identity (smallest first). Identity is the fallback whatever the header says: a page is always
/// better than a 406.
pub fn choose_encoding(accept_encoding: Option<&str>) -> Encoding {
    let Some(header) = accept_encoding else {
        return Encoding::Identity;
    };
    let mut best = (0.0_f32, Encoding::Identity);
    let mut wildcard = None;
    let mut explicit = Vec::new();
    for item in header.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        // A `q` that is no qvalue counts as 0: the coding was not plainly accepted.
        let q = parts
            .find_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .or_else(|| p.trim().strip_prefix("Q="))
            })
            .map_or(1.0, |v| qvalue(v.trim()).unwrap_or(0.0));
        match coding.as_str() {
            "zstd" => explicit.push((Encoding::Zstd, q)),
            "gzip" | "x-gzip" => explicit.push((Encoding::Gzip, q)),
            "*" => wildcard = Some(q),
            _ => {}
        }
    }
    for candidate in [Encoding::Zstd, Encoding::Gzip] {
        let q = explicit
            .iter()
            .find(|(e, _)| *e == candidate)
            .map(|(_, q)| *q)
            .or(wildcard)
            .unwrap_or(0.0);
        if q > best.0 {
            best = (q, candidate);
        }
    }
    best.1
}

/// RFC 9110's `qvalue`: `0` to `1` with at most three decimals (`0.5`, `1.000`); `None` for
/// anything else (`nan`, `2`, `0.0001`, `high`), which a float parser would read or misread.
fn qvalue(text: &str) -> Option<f32> {
    let (whole, decimals) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let valid = match whole {
        "0" => decimals.len() <= 3 && digits(decimals),
        "1" => decimals.len() <= 3 && decimals.bytes().all(|b| b == b'0'),
        _ => false,
    };
    valid.then(|| text.parse().ok()).flatten()
}

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 requires for it).
pub fn not_modified(req: &HttpRequest, etag: &str) -> bool {
    let Some(header) = req.headers().get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let ours = etag.trim_start_matches("W/");
    header
        .split(',')
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == ours)
}

pub fn accept_encoding(req: &HttpRequest) -> Option<&str> {
    req.headers().get(ACCEPT_ENCODING).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn encodings_follow_what_real_clients_send() {
        let cases = [
            (None, Encoding::Identity),
            (Some("gzip, deflate"), Encoding::Gzip),       // pip, pdm
            (Some("gzip, deflate, zstd"), Encoding::Zstd), // uv, poetry
            (Some("gzip;q=1.0, zstd;q=0.5"), Encoding::Gzip),
            (Some("zstd;q=0, gzip"), Encoding::Gzip),
            (Some("*"), Encoding::Zstd),
            (Some("*;q=0.5, gzip;q=0"), Encoding::Zstd),
            (Some("identity"), Encoding::Identity),
            (Some("br"), Encoding::Identity),
            (Some(""), Encoding::Identity),
            // A q-value that is no qvalue (RFC 9110 12.4.2) does not make a coding acceptable.
            (Some("zstd;q=high, gzip"), Encoding::Gzip),
            (Some("zstd;q=nan, gzip;q=0.5"), Encoding::Gzip),
            (Some("zstd;q=2, gzip;q=0.5"), Encoding::Gzip),
            (Some("zstd;q=-1, gzip;q=0.5"), Encoding::Gzip),
            (Some("zstd;q=0.0001, gzip;q=0.5"), Encoding::Gzip),
            (Some("gzip;q="), Encoding::Identity),
            (Some("*;q=x"), Encoding::Identity),
            (Some("zstd;Q=0.9, gzip;q=0.5"), Encoding::Zstd),
            (Some("zstd;q=1.000, gzip"), Encoding::Zstd),
        ];
        for (header, want) in cases {
            assert_eq!(choose_encoding(header), want, "{header:?}");
        }
    }

    #[test]
    fn if_none_match_compares_weakly_and_handles_lists() {
        let etag = "\"abc\"";
        for (header, want) in [
            ("\"abc\"", true),
            ("W/\"abc\"", true),
            ("\"x\", \"abc\"", true),
            ("*", true),
            ("\"abcd\"", false),
            ("abc", false),
        ] {
            let req = TestRequest::default()
                .insert_header((IF_NONE_MATCH, header))
                .to_http_request();
            assert_eq!(not_modified(&req, etag), want, "{header}");
        }
        assert!(!not_modified(&TestRequest::default().to_http_request(), etag));
    }
}
