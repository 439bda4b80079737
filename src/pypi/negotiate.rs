//! PEP 691 content negotiation: which format a client gets, from `?format=` or `Accept`.

use percent_encoding::percent_decode_str;
use thiserror::Error;

pub const JSON_V1: &str = "application/vnd.pypi.simple.v1+json";
pub const HTML_V1: &str = "application/vnd.pypi.simple.v1+html";
pub const TEXT_HTML: &str = "text/html";
const JSON_LATEST: &str = "application/vnd.pypi.simple.latest+json";
const HTML_LATEST: &str = "application/vnd.pypi.simple.latest+html";
/// The `Content-Type` sent for `text/html`: browsers need the charset, vnd types define theirs.
pub const TEXT_HTML_CONTENT_TYPE: &str = "text/html; charset=utf-8";

const SUPPORTED: &str = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html, text/html";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Html,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub format: Format,
    /// The `Content-Type` header value to answer with.
    pub content_type: &'static str,
}

/// Nothing the client accepts can be served (HTTP 406).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("cannot answer with {requested}; supported types: {SUPPORTED}")]
pub struct NotAcceptable {
    /// What the client asked for, as it asked (the `Accept` value or `format=…`).
    pub requested: String,
}

/// What we can answer with, in our order of preference when a wildcard makes several equally good:
/// `*/*` and `text/*` get plain HTML (what a browser or an old client wants), `application/*` JSON.
struct Offer {
    negotiated: Negotiated,
    /// The media type's top-level type, for `type/*` ranges.
    main_type: &'static str,
    /// Exact media types answered by this offer (`latest` is answered with v1).
    names: &'static [&'static str],
}

const OFFERS: [Offer; 3] = [
    Offer {
        negotiated: Negotiated {
            format: Format::Html,
            content_type: TEXT_HTML_CONTENT_TYPE,
        },
        main_type: "text",
        names: &[TEXT_HTML],
    },
    Offer {
        negotiated: Negotiated {
            format: Format::Json,
            content_type: JSON_V1,
        },
        main_type: "application",
        names: &[JSON_V1, JSON_LATEST],
    },
    Offer {
        negotiated: Negotiated {
            format: Format::Html,
            content_type: HTML_V1,
        },
        main_type: "application",
        names: &[HTML_V1, HTML_LATEST],
    },
];

const DEFAULT: Negotiated = OFFERS[0].negotiated;

/// Chooses the response format. `raw_query` is the undecoded query string; its `format=` parameter
/// overrides `accept`.
pub fn negotiate(accept: Option<&str>, raw_query: &str) -> Result<Negotiated, NotAcceptable> {
    if let Some(format) = format_param(raw_query)? {
        return by_name(&format).ok_or(NotAcceptable {
            requested: format!("format={format}"),
        });
    }
    match accept.map(str::trim) {
        None | Some("") => Ok(DEFAULT),
        Some(accept) => by_accept(accept).ok_or_else(|| NotAcceptable {
            requested: accept.to_owned(),
        }),
    }
}

/// The first non-empty `format=` value, percent-decoded. `+` stays `+`: it is part of the media
/// type, and form decoding (which turns it into a space) would break the unencoded spelling.
fn format_param(raw_query: &str) -> Result<Option<String>, NotAcceptable> {
    for pair in raw_query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "format" || value.is_empty() {
            continue;
        }
        return match percent_decode_str(value).decode_utf8() {
            Ok(decoded) => Ok(Some(decoded.trim().to_owned())),
            Err(_) => Err(NotAcceptable {
                requested: format!("format={value}"),
            }),
        };
    }
    Ok(None)
}

fn by_name(media_type: &str) -> Option<Negotiated> {
    OFFERS
        .iter()
        .find(|offer| {
            offer
                .names
                .iter()
                .any(|name| name.eq_ignore_ascii_case(media_type))
        })
        .map(|offer| offer.negotiated)
}

/// One media range of an `Accept` header.
struct Range<'a> {
    main_type: &'a str,
    subtype: &'a str,
    /// Quality in thousandths, 0..=1000.
    q: u16,
}

impl<'a> Range<'a> {
    /// `None` for a malformed entry, which is ignored as RFC 9110 allows.
    fn parse(entry: &'a str) -> Option<Self> {
        let mut parts = entry.split(';');
        let (main_type, subtype) = parts.next()?.trim().split_once('/')?;
        let (main_type, subtype) = (main_type.trim(), subtype.trim());
        if main_type.is_empty() || subtype.is_empty() || (main_type == "*" && subtype != "*") {
            return None;
        }
        let mut q = 1000;
        for param in parts {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("q") {
                q = parse_q(value.trim())?;
                // Parameters after q are accept-extensions, which say nothing about the type.
                break;
            }
        }
        Some(Range {
            main_type,
            subtype,
            q,
        })
    }

    /// How specifically this range names `offer`: 2 exactly, 1 by `type/*`, 0 by `*/*`.
    fn specificity(&self, offer: &Offer) -> Option<u8> {
        if self.main_type == "*" {
            return Some(0);
        }
        if !self.main_type.eq_ignore_ascii_case(offer.main_type) {
            return None;
        }
        if self.subtype == "*" {
            return Some(1);
        }
        let full_len = self.main_type.len() + 1 + self.subtype.len();
        offer.names.iter().find_map(|name| {
            let subtype = name.get(self.main_type.len() + 1..)?;
            (name.len() == full_len && subtype.eq_ignore_ascii_case(self.subtype)).then_some(2)
        })
    }
}

fn parse_q(value: &str) -> Option<u16> {
    let q: f32 = value.parse().ok()?;
    (0.0..=1.0).contains(&q).then(|| (q * 1000.0).round() as u16)
}

/// Each offer gets the quality of the most specific range naming it (the first such on a tie);
/// the best quality wins, then the offer named earliest in the header, then our preference.
fn by_accept(accept: &str) -> Option<Negotiated> {
    let ranges: Vec<Range<'_>> = accept.split(',').filter_map(Range::parse).collect();
    OFFERS
        .iter()
        .enumerate()
        .filter_map(|(preference, offer)| {
            let (position, range) = ranges
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r.specificity(offer).map(|s| (s, i, r)))
                .max_by_key(|&(s, i, _)| (s, std::cmp::Reverse(i)))
                .map(|(_, i, r)| (i, r))?;
            (range.q > 0).then_some((range.q, position, preference, offer))
        })
        .max_by_key(|&(q, position, preference, _)| {
            (q, std::cmp::Reverse(position), std::cmp::Reverse(preference))
        })
        .map(|(_, _, _, offer)| offer.negotiated)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected answers, by content type: plain HTML, v1 HTML, v1 JSON, or 406.
    const HTML: Option<&str> = Some(TEXT_HTML_CONTENT_TYPE);
    const VND_HTML: Option<&str> = Some(HTML_V1);
    const JSON: Option<&str> = Some(JSON_V1);
    const REFUSED: Option<&str> = None;

    #[test]
    fn negotiation_table() {
        let pip = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01";
        let uv = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";
        let poetry = "application/vnd.pypi.simple.v1+json, */*;q=0.1";
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        let cases: &[(Option<&str>, &str, Option<&str>)] = &[
            // Real clients (pdm sends what pip sends).
            (Some(pip), "", JSON),
            (Some(uv), "", JSON),
            (Some(poetry), "", JSON),
            (Some(browser), "", HTML),
            // Defaults.
            (None, "", HTML),
            (Some(""), "", HTML),
            (Some("  "), "", HTML),
            (Some("*/*"), "", HTML),
            (Some("text/*"), "", HTML),
            (Some("application/*"), "", JSON),
            // Exact types, aliases, case, whitespace, parameters.
            (Some(JSON_V1), "", JSON),
            (Some(HTML_V1), "", VND_HTML),
            (Some(JSON_LATEST), "", JSON),
            (Some(HTML_LATEST), "", VND_HTML),
            (Some("Application/VND.PyPI.Simple.V1+JSON"), "", JSON),
            (Some(" text/html ; charset=utf-8 ; q=0.5 "), "", HTML),
            (Some("text/html;level=1;Q=1;ext=x"), "", HTML),
            // q-values.
            (
                Some("text/html;q=0.5, application/vnd.pypi.simple.v1+json;q=0.6"),
                "",
                JSON,
            ),
            (Some("application/vnd.pypi.simple.v1+json;q=0, */*"), "", HTML),
            (Some("text/html;q=0, */*;q=0.5"), "", JSON),
            (Some("*/*;q=0"), "", REFUSED),
            (Some("text/*;q=0, text/html"), "", HTML),
            (Some("text/html;q=0, text/*"), "", REFUSED),
            (Some("text/html;q=abc"), "", REFUSED),
            (
                Some("text/html;q=2, application/vnd.pypi.simple.v1+json"),
                "",
                JSON,
            ),
            // Ties: the earlier entry wins.
            (Some("text/html, application/vnd.pypi.simple.v1+json"), "", HTML),
            (Some("application/vnd.pypi.simple.v1+json, text/html"), "", JSON),
            (
                Some("application/vnd.pypi.simple.v1+html;q=0.5, application/vnd.pypi.simple.v1+json;q=0.5"),
                "",
                VND_HTML,
            ),
            // Nothing acceptable.
            (Some("application/json"), "", REFUSED),
            (Some("image/png, application/xml"), "", REFUSED),
            (Some("garbage"), "", REFUSED),
            // format= overrides Accept, in both spellings of `+`.
            (
                Some("text/html"),
                "format=application/vnd.pypi.simple.v1%2Bjson",
                JSON,
            ),
            (
                Some("text/html"),
                "format=application/vnd.pypi.simple.v1+json",
                JSON,
            ),
            (Some(JSON_V1), "x=1&format=text%2Fhtml", HTML),
            (None, "format=application/vnd.pypi.simple.latest%2Bhtml", VND_HTML),
            (Some(JSON_V1), "format=", JSON),
            (None, "format=application/json", REFUSED),
            (None, "format=application/vnd.pypi.simple.v1%20json", REFUSED),
            (None, "format=%FF", REFUSED),
        ];
        for &(accept, query, expected) in cases {
            let got = negotiate(accept, query);
            let expected = expected.map(|content_type| Negotiated {
                format: if content_type == JSON_V1 {
                    Format::Json
                } else {
                    Format::Html
                },
                content_type,
            });
            assert_eq!(got.ok(), expected, "Accept: {accept:?}, query: {query:?}");
        }
    }

    #[test]
    fn refusal_names_the_request_and_the_supported_types() {
        let err = negotiate(Some("application/json"), "").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("application/json"), "{message}");
        for supported in [JSON_V1, HTML_V1, TEXT_HTML] {
            assert!(message.contains(supported), "{message}");
        }
        let err = negotiate(None, "format=foo").unwrap_err();
        assert_eq!(err.requested, "format=foo");
    }
}
