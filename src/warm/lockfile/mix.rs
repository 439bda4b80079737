//! `mix.lock`: a map from each dependency's name to where it comes from; for hex, the package,
//! version, checksums and repository.

use super::{Bad, HexWant, LockFile};
use crate::hex::terms::{self, Term};

pub(super) fn parse(text: &str, lock: &mut LockFile) -> Result<(), Bad> {
    // Mix reads an empty lock as one without dependencies.
    if text.trim().is_empty() {
        return Ok(());
    }
    let term = terms::elixir(text)?;
    let entries = term
        .map()
        .ok_or_else(|| Bad::new(term.line, "expected a map of dependencies, %{...}"))?;
    for (key, value) in entries {
        let app = key
            .name()
            .ok_or_else(|| Bad::new(key.line, "expected a dependency's name"))?;
        let items = value.tuple().unwrap_or_default();
        match items.first().and_then(Term::atom) {
            Some("hex") => lock.hex.push(hex(app, value, items)?),
            Some(kind) => lock.skip(app, format!("a {kind} source")),
            None => {
                return Err(Bad::new(
                    value.line,
                    format!("expected {app}'s source, a tuple such as {{:hex, ...}}"),
                ));
            }
        }
    }
    Ok(())
}

/// `{:hex, :name, "version", "inner checksum", managers, deps, "repo", "outer checksum"}`; old
/// locks end it early, after the version, the inner checksum or the repository.
fn hex(app: &str, tuple: &Term, items: &[Term]) -> Result<HexWant, Bad> {
    let text = |index: usize, what: &str| match items.get(index) {
        None => Ok(None),
        Some(item) => item
            .text()
            .map(Some)
            .ok_or_else(|| Bad::new(item.line, format!("expected {what} as a string"))),
    };
    let name = items
        .get(1)
        .and_then(Term::name)
        .ok_or_else(|| Bad::new(tuple.line, format!("expected the hex package name of {app}")))?;
    let version = text(2, "the version")?
        .ok_or_else(|| Bad::new(tuple.line, format!("expected the version of {app}")))?;
    let checksum = |index: usize| items.get(index).map(Term::checksum).transpose();
    Ok(HexWant {
        name: name.to_owned(),
        version: version.to_owned(),
        repo: text(6, "the repository")?.unwrap_or("hexpm").to_owned(),
        inner_checksum: checksum(3)?,
        outer_checksum: checksum(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{LockError, Skipped, parse};

    use crate::warm::lockfile::test_support::hex;

    const COWBOY_INNER: &str = "2AA7B15B5A1E1A5C1E9BBA9D9B3C7E2E7E4A5C0F6C3A1B0E1A7D9D2E0C9F4B3A";
    const COWBOY_OUTER: &str = "f3f2e1d0c9b8a7968574635241302f1e0d1c2b3a49586776859a0b1c2d3e4f50";
    const POISON_INNER: &str = "d9eb636610e096f86f25d9a46f35a9facac35609a7591b3be3326e99a0484665";

    #[test]
    fn hex_entries_of_every_length_and_the_rest_skipped() {
        let text = format!(
            r#"%{{
  "cowboy": {{:hex, :cowboy, "2.9.0", "{COWBOY_INNER}", [:make, :rebar3], [{{:cowlib, "2.11.0", [hex: :cowlib, repo: "hexpm", optional: false]}}, {{:ranch, "1.8.0", [hex: :ranch, repo: "hexpm", optional: false]}}], "hexpm", "{COWBOY_OUTER}"}},
  # a private organization's package, under another name
  "acme_auth": {{:hex, :auth, "0.4.2", "{POISON_INNER}", [:mix], [], "hexpm:acme", "{COWBOY_OUTER}"}},
  "dep": {{:git, "https://git.example/org/dep.git", "4a5b6c7d8e9f00112233445566778899aabbccdd", [branch: "main"]}},
  "local": {{:path, "../local", []}},
  "poison": {{:hex, :poison, "3.1.0", "{POISON_INNER}", [:mix], [], "hexpm"}},
  "ancient" => {{:hex, :ancient, "1.0.0"}},
  plug: {{:hex, :plug, "1.16.1", "{POISON_INNER}"}},
}}
"#
        );
        let lock = parse("mix.lock", &text).unwrap();
        assert_eq!(
            lock.hex,
            [
                hex("cowboy", "2.9.0", "hexpm", Some(COWBOY_INNER), Some(COWBOY_OUTER)),
                hex(
                    "auth",
                    "0.4.2",
                    "hexpm:acme",
                    Some(POISON_INNER),
                    Some(COWBOY_OUTER)
                ),
                hex("poison", "3.1.0", "hexpm", Some(POISON_INNER), None),
                hex("ancient", "1.0.0", "hexpm", None, None),
                hex("plug", "1.16.1", "hexpm", Some(POISON_INNER), None),
            ]
        );
        let skipped = |what: &str, why: &str| Skipped {
            what: what.into(),
            why: why.into(),
        };
        assert_eq!(
            lock.skipped,
            [skipped("dep", "a git source"), skipped("local", "a path source")]
        );
        assert_eq!(parse("mix.lock", "%{}\n").unwrap().hex, []);
        assert_eq!(parse("mix.lock", "\n").unwrap().hex, []);
    }

    fn syntax_error(text: &str) -> (usize, String) {
        match parse("mix.lock", text) {
            Err(LockError::Syntax { line, reason, .. }) => (line, reason),
            other => panic!("expected a syntax error for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_their_line() {
        let (line, reason) = syntax_error("%{\n  \"a\": {:hex, :a, \"1.0.0\", \"zz\"},\n}");
        assert_eq!(line, 2);
        assert!(reason.contains("checksum"), "{reason}");
        let (line, reason) = syntax_error("%{\n  \"a\": {:hex, :a},\n}");
        assert_eq!((line, reason.as_str()), (2, "expected the version of a"));
        let (line, reason) = syntax_error("%{\n\n  \"a\": \"1.0.0\",\n}");
        assert_eq!(line, 3);
        assert!(reason.contains("a tuple"), "{reason}");
        assert!(syntax_error("[]").1.contains("a map"));
        assert_eq!(syntax_error("%{\n  \"a\": {:hex, :a, \"1.0.0\"\n").0, 3);
    }
}
