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
        let q = parts
            .filter_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .or_else(|| p.trim().strip_prefix("Q="))
            })
            .find_map(|v| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
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
