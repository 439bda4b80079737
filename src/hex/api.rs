//! Bodies of the hex HTTP API (`/hex/api/...`) in the form the client asked for. hex clients
//! (mix, rebar3's hex_core) send `Accept: application/vnd.hex+erlang` and read only that form:
//! any other body reaches them as nothing, so an error's message would be lost. Others get JSON.

use std::collections::HashMap;

use eetf::{Atom, Binary, FixInteger, List, Map, Term};
use serde_json::Value;

/// The media type of Erlang's external term format, as hex.pm serves it.
pub const ERLANG_CONTENT_TYPE: &str = "application/vnd.hex+erlang";

/// Whether an `Accept` header asks for the Erlang term format.
pub fn wants_erlang(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| {
        accept.split(',').any(|range| {
            range
                .split(';')
                .next()
                .is_some_and(|t| t.trim() == ERLANG_CONTENT_TYPE)
        })
    })
}

/// `body` encoded as the client asked: (content type, bytes).
pub fn encode(body: &Value, erlang: bool) -> (&'static str, Vec<u8>) {
    if !erlang {
        return ("application/json", body.to_string().into_bytes());
    }
    let mut bytes = Vec::new();
    // Writing to a Vec fails only for terms the conversion never makes (atoms over 255 bytes).
    if term(body).encode(&mut bytes).is_err() {
        bytes.clear();
    }
    (ERLANG_CONTENT_TYPE, bytes)
}

/// The text fields of a request body that is a map (Erlang terms when `erlang`, else JSON), as
/// hex clients send parameters (`#{<<"reason">> => <<"security">>, ...}`). Values that are not
/// text are left out (in Erlang terms, numbers and `[]`; other terms are refused).
pub fn decode_fields(body: &[u8], erlang: bool) -> Result<HashMap<String, String>, String> {
    if erlang {
        return erlang_fields(body);
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("not a JSON object".into());
    };
    Ok(fields
        .into_iter()
        .filter_map(|(key, value)| Some((key, value.as_str()?.to_owned())))
        .collect())
}

/// Reads `term_to_binary` of a map of text to text. By hand, not with eetf's decoder: that one
/// allocates what a length field declares before reading it, and these bytes come from clients.
/// Here every length is checked against the bytes left first.
fn erlang_fields(body: &[u8]) -> Result<HashMap<String, String>, String> {
    /// Erlang's external term format: the version byte, the tags read here.
    const VERSION: u8 = 131;
    const MAP: u8 = 116;
    const BINARY: u8 = 109;
    const ATOM: u8 = 100;
    const ATOM_UTF8: u8 = 118;
    const SMALL_ATOM_UTF8: u8 = 119;
    const SMALL_INTEGER: u8 = 97;
    const INTEGER: u8 = 98;
    const NIL: u8 = 106;
    struct Reader<'a>(&'a [u8]);
    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
            if n > self.0.len() {
                return Err(format!(
                    "the term ends early ({n} bytes declared, {} left)",
                    self.0.len()
                ));
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Ok(head)
        }
        fn length(&mut self, width: usize) -> Result<usize, String> {
            Ok(self
                .take(width)?
                .iter()
                .fold(0, |n, &b| (n << 8) | usize::from(b)))
        }
        /// Text, `None` for an integer or `[]` (read past), an error for anything else.
        fn text(&mut self) -> Result<Option<String>, String> {
            let width = match self.take(1)?[0] {
                BINARY => 4,
                ATOM | ATOM_UTF8 => 2,
                SMALL_ATOM_UTF8 => 1,
                SMALL_INTEGER => return self.take(1).map(|_| None),
                INTEGER => return self.take(4).map(|_| None),
                NIL => return Ok(None),
                tag => {
                    return Err(format!(
                        "a map entry that is neither text nor a number (tag {tag})"
                    ));
                }
            };
            let len = self.length(width)?;
            String::from_utf8(self.take(len)?.to_vec())
                .map(Some)
                .map_err(|_| "text that is not UTF-8".to_owned())
        }
    }
    let mut reader = Reader(body);
    if reader.take(1)? != [VERSION] {
        return Err("not an Erlang term (no version byte 131)".into());
    }
    if reader.take(1)? != [MAP] {
        return Err("not a map".into());
    }
    let arity = reader.length(4)?;
    // Each entry takes at least two bytes (a key and a value of one tag each).
    if arity > reader.0.len() / 2 {
        return Err(format!("a map of {arity} entries in {} bytes", reader.0.len()));
    }
    let mut fields = HashMap::with_capacity(arity);
    for _ in 0..arity {
        let key = reader.text()?;
        let value = reader.text()?;
        if let (Some(key), Some(value)) = (key, value) {
            fields.insert(key, value);
        }
    }
    if !reader.0.is_empty() {
        return Err("bytes after the term".into());
    }
    Ok(fields)
}

/// A JSON value as hex.pm's API writes it in Erlang terms: objects are maps with binary keys,
/// strings binaries, `null` the atom `nil`.
fn term(value: &Value) -> Term {
    match value {
        Value::Null => Term::from(Atom::from("nil")),
        Value::Bool(b) => Term::from(Atom::from(if *b { "true" } else { "false" })),
        Value::Number(n) => match n.as_i64().and_then(|n| i32::try_from(n).ok()) {
            Some(n) => Term::from(FixInteger::from(n)),
            None => Term::from(Binary::from(n.to_string().into_bytes())),
        },
        Value::String(s) => Term::from(Binary::from(s.as_bytes())),
        Value::Array(items) => Term::from(List::from(items.iter().map(term).collect::<Vec<_>>())),
        Value::Object(fields) => Term::from(Map::from(
            fields
                .iter()
                .map(|(key, value)| (Term::from(Binary::from(key.as_bytes())), term(value)))
                .collect::<std::collections::HashMap<_, _>>(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erlang_is_chosen_by_accept_and_decodes_back() {
        assert!(wants_erlang(Some("application/vnd.hex+erlang")));
        assert!(wants_erlang(Some(
            "application/json, application/vnd.hex+erlang; q=0.9"
        )));
        assert!(!wants_erlang(Some("application/json")));
        assert!(!wants_erlang(None));
        let body = serde_json::json!({"status": 422, "message": "bad", "errors": {"name": "taken"}, "ok": false, "none": null, "list": [1, "a"]});
        let (content_type, json) = encode(&body, false);
        assert_eq!(content_type, "application/json");
        assert_eq!(serde_json::from_slice::<Value>(&json).unwrap(), body);
        let (content_type, bytes) = encode(&body, true);
        assert_eq!(content_type, ERLANG_CONTENT_TYPE);
        let Term::Map(map) = Term::decode(bytes.as_slice()).unwrap() else {
            panic!("not a map");
        };
        let get = |key: &str| map.map[&Term::from(Binary::from(key.as_bytes()))].clone();
        assert_eq!(get("status"), Term::from(FixInteger::from(422)));
        assert_eq!(get("message"), Term::from(Binary::from(&b"bad"[..])));
        assert_eq!(get("ok"), Term::from(Atom::from("false")));
        assert_eq!(get("none"), Term::from(Atom::from("nil")));
        assert!(matches!(get("errors"), Term::Map(_)));
        assert!(matches!(get("list"), Term::List(l) if l.elements.len() == 2));
    }

    #[test]
    fn request_fields_are_read_from_terms_or_json() {
        let (_, bytes) = encode(
            &serde_json::json!({"reason": "security", "message": "CVE", "n": 1}),
            true,
        );
        let fields = decode_fields(&bytes, true).unwrap();
        assert_eq!(fields.get("reason").map(String::as_str), Some("security"));
        assert_eq!(fields.get("message").map(String::as_str), Some("CVE"));
        assert!(!fields.contains_key("n"));
        let fields = decode_fields(br#"{"reason": "other"}"#, false).unwrap();
        assert_eq!(fields.get("reason").map(String::as_str), Some("other"));
        assert!(decode_fields(b"\x83junk", true).is_err());
        assert!(decode_fields(b"[1]", false).is_err());
        // Declared lengths past the body are errors, never allocations.
        assert!(decode_fields(b"\x83t\xff\xff\xff\xff", true).is_err());
        assert!(decode_fields(b"\x83t\x00\x00\x00\x01m\xff\xff\xff\xffab", true).is_err());
    }

    proptest::proptest! {
        #![proptest_config(crate::fuzz_support::config(256))]

        /// Any body, or a good one with bytes changed: an error or fields, never a panic, and
        /// never more text than the body holds.
        #[test]
        fn any_erlang_body_is_read_or_refused(
            mutations in proptest::collection::vec((0usize..64, proptest::prelude::any::<u8>()), 0..4),
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let (_, mut body) = encode(&serde_json::json!({"reason": "security", "message": "CVE"}), true);
            for (at, byte) in mutations {
                let len = body.len();
                body[at % len] = byte;
            }
            for body in [body, noise] {
                if let Ok(fields) = decode_fields(&body, true) {
                    let text: usize = fields.iter().map(|(k, v)| k.len() + v.len()).sum();
                    proptest::prop_assert!(text <= body.len());
                }
            }
        }
    }
}
