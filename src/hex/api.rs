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
/// hex clients send parameters (`#{<<"reason">> => <<"security">>, ...}`); other values are
/// left out.
pub fn decode_fields(body: &[u8], erlang: bool) -> Result<HashMap<String, String>, String> {
    if !erlang {
        let value: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
        let Value::Object(fields) = value else {
            return Err("not a JSON object".into());
        };
        return Ok(fields
            .into_iter()
            .filter_map(|(key, value)| Some((key, value.as_str()?.to_owned())))
            .collect());
    }
    let Term::Map(map) = Term::decode(body).map_err(|e| format!("not an Erlang term: {e}"))? else {
        return Err("not a map".into());
    };
    let text = |term: &Term| match term {
        Term::Binary(b) => String::from_utf8(b.bytes.clone()).ok(),
        Term::Atom(a) => Some(a.name.clone()),
        _ => None,
    };
    Ok(map
        .map
        .iter()
        .filter_map(|(key, value)| Some((text(key)?, text(value)?)))
        .collect())
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
    }
}
