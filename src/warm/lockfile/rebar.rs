//! `rebar.lock`: rebar3's locked dependencies, and the checksums of those from hex.

use std::collections::HashMap;

use super::{Bad, HexWant, LockFile};
use crate::hex::terms::{self, Term};

pub(super) fn parse(text: &str, lock: &mut LockFile) -> Result<(), Bad> {
    let terms = terms::erlang(text)?;
    let Some(first) = terms.first() else {
        return Ok(());
    };
    // `{"1.2.0", Deps}` since the lock had checksums; a bare list of deps before.
    let deps = match first.tuple() {
        Some([version, deps]) if version.text().is_some() => deps.list(),
        Some(_) => None,
        None => first.list(),
    }
    .ok_or_else(|| {
        Bad::new(
            first.line,
            "expected the locked dependencies: [...] or {\"1.2.0\", [...]}",
        )
    })?;

    let mut inner = HashMap::new();
    let mut outer = HashMap::new();
    if let Some(checksums) = terms.get(1) {
        let lists = checksums
            .list()
            .ok_or_else(|| Bad::new(checksums.line, "expected the checksums: [{pkg_hash, [...]}, ...]"))?;
        for entry in lists {
            match entry.tuple() {
                Some([kind, list]) if kind.atom() == Some("pkg_hash") => read_checksums(list, &mut inner)?,
                Some([kind, list]) if kind.atom() == Some("pkg_hash_ext") => {
                    read_checksums(list, &mut outer)?
                }
                // Anything a later rebar3 adds says nothing about which packages.
                _ => {}
            }
        }
    }

    for dep in deps {
        let Some([app, source, ..]) = dep.tuple() else {
            return Err(Bad::new(
                dep.line,
                "expected a locked dependency: {Name, Source, Level}",
            ));
        };
        let app = app
            .text()
            .ok_or_else(|| Bad::new(app.line, "expected the application's name as a binary"))?;
        let items = source.tuple().unwrap_or_default();
        match items.first().and_then(Term::atom) {
            Some("pkg") => {
                let malformed = || Bad::new(source.line, format!("expected {app}'s {{pkg, Name, Version}}"));
                let (name, version, repo) = match items {
                    [_, name, version] => (name, version, None),
                    [_, name, version, repo] => (name, version, Some(repo)),
                    _ => return Err(malformed()),
                };
                let (Some(name), Some(version)) = (name.text(), version.text()) else {
                    return Err(malformed());
                };
                let repo = match repo {
                    None => "hexpm",
                    Some(repo) => repo.name().ok_or_else(malformed)?,
                };
                lock.hex.push(HexWant {
                    name: name.to_owned(),
                    version: version.to_owned(),
                    repo: repo.to_owned(),
                    inner_checksum: inner.get(app).cloned(),
                    outer_checksum: outer.get(app).cloned(),
                });
            }
            Some(kind) => lock.skip(app, format!("a {kind} source")),
            None => return Err(Bad::new(source.line, format!("expected {app}'s source, a tuple"))),
        }
    }
    Ok(())
}

/// `[{<<"app">>, <<"HEX">>}, ...]`, by application name.
fn read_checksums(list: &Term, into: &mut HashMap<String, String>) -> Result<(), Bad> {
    let entries = list
        .list()
        .ok_or_else(|| Bad::new(list.line, "expected a list of checksums"))?;
    for entry in entries {
        let Some([app, checksum]) = entry.tuple() else {
            return Err(Bad::new(entry.line, "expected {Name, Checksum}"));
        };
        let app = app
            .text()
            .ok_or_else(|| Bad::new(app.line, "expected the application's name as a binary"))?;
        into.insert(app.to_owned(), checksum.checksum()?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{LockError, Skipped, parse};

    use crate::warm::lockfile::test_support::hex;

    const COWBOY_INNER: &str = "2AA7B15B5A1E1A5C1E9BBA9D9B3C7E2E7E4A5C0F6C3A1B0E1A7D9D2E0C9F4B3A";
    const COWBOY_OUTER: &str = "F3F2E1D0C9B8A7968574635241302F1E0D1C2B3A49586776859A0B1C2D3E4F50";
    const COWLIB_INNER: &str = "0B9FF9C346629256C42EBE1EEB769A83C6CB771A6EE5960BD110AB0B9B872063";

    #[test]
    fn the_current_form_with_checksums() {
        let text = format!(
            r#"{{"1.2.0",
[{{<<"cowboy">>,{{pkg,<<"cowboy">>,<<"2.9.0">>}},0}},
 {{<<"cowlib">>,{{pkg,<<"cowlib">>,<<"2.11.0">>}},1}},
 {{<<"jsx_app">>,{{pkg,<<"jsx">>,<<"3.1.0">>,<<"hexpm:acme">>}},0}},
 {{<<"ranch">>,{{pkg,<<"ranch">>,<<"1.8.0">>}},1}},
 {{<<"tool">>,
  {{git,"https://git.example/org/tool.git",
       {{ref,"4a5b6c7d8e9f00112233445566778899aabbccdd"}}}},
  0}}]}}.
[
{{pkg_hash,[
 {{<<"cowboy">>, <<"{COWBOY_INNER}">>}},
 {{<<"cowlib">>, <<"{COWLIB_INNER}">>}}]}},
{{pkg_hash_ext,[
 {{<<"cowboy">>, <<"{COWBOY_OUTER}">>}}]}}
].
"#
        );
        let lock = parse("rebar.lock", &text).unwrap();
        assert_eq!(
            lock.hex,
            [
                hex("cowboy", "2.9.0", "hexpm", Some(COWBOY_INNER), Some(COWBOY_OUTER)),
                hex("cowlib", "2.11.0", "hexpm", Some(COWLIB_INNER), None),
                hex("jsx", "3.1.0", "hexpm:acme", None, None),
                hex("ranch", "1.8.0", "hexpm", None, None),
            ]
        );
        assert_eq!(
            lock.skipped,
            [Skipped {
                what: "tool".into(),
                why: "a git source".into()
            }]
        );
        assert!(lock.python.is_empty());
    }

    #[test]
    fn the_old_bare_list() {
        let text = "%% rebar3 3.3\n[{<<\"cowboy\">>,{pkg,<<\"cowboy\">>,<<\"1.1.2\">>},0},\n {<<\"lager\">>,{git,\"https://git.example/erlang-lager/lager.git\",{tag,\"3.2.4\"}},0}].\n";
        let lock = parse("rebar.lock", text).unwrap();
        assert_eq!(lock.hex, [hex("cowboy", "1.1.2", "hexpm", None, None)]);
        assert_eq!(lock.skipped.len(), 1);
        assert_eq!(parse("rebar.lock", "[].\n").unwrap().hex, []);
    }

    fn syntax_error(text: &str) -> (usize, String) {
        match parse("rebar.lock", text) {
            Err(LockError::Syntax { line, reason, .. }) => (line, reason),
            other => panic!("expected a syntax error for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_their_line() {
        let (line, reason) =
            syntax_error("{\"1.2.0\",\n[{<<\"cowboy\",{pkg,<<\"cowboy\">>,<<\"2.9.0\">>},0}]}.\n");
        assert_eq!(line, 2);
        assert!(reason.starts_with("unterminated binary"), "{reason}");
        let (line, reason) = syntax_error("[{<<\"a\">>,\n {pkg,<<\"a\">>},0}].");
        assert_eq!(line, 2);
        assert!(reason.contains("{pkg, Name, Version}"), "{reason}");
        let (line, reason) = syntax_error("{\"1.2.0\",[]}.\n[{pkg_hash,[\n{<<\"a\">>, <<\"not hex\">>}]}].");
        assert_eq!(line, 3);
        assert!(reason.contains("checksum"), "{reason}");
        assert_eq!(syntax_error("#{}.").0, 1);
        assert!(syntax_error("{ok, []}.").1.contains("locked dependencies"));
    }
}
