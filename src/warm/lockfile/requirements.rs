//! pip's requirements files: a requirement or options per line, as `pip install -r` reads them.

use std::str::FromStr;

use super::{Bad, LockFile, Pick, PythonWant, digest};

/// The options a line of their own may hold, and whether each takes a value. Only `-r` and `-e`
/// matter here: the rest change where or how pip finds files, and constraints (`-c`) only narrow
/// versions of projects named elsewhere.
const FILE_OPTIONS: &[(&str, bool)] = &[
    ("-r", true),
    ("--requirement", true),
    ("-e", true),
    ("--editable", true),
    ("-c", true),
    ("--constraint", true),
    ("-i", true),
    ("--index-url", true),
    ("--extra-index-url", true),
    ("--no-index", false),
    ("-f", true),
    ("--find-links", true),
    ("--trusted-host", true),
    ("--pre", false),
    ("--no-binary", true),
    ("--only-binary", true),
    ("--prefer-binary", false),
    ("--require-hashes", false),
    ("--use-feature", true),
];

/// The options a requirement may carry after it; only the hashes matter here.
const REQUIREMENT_OPTIONS: &[(&str, bool)] = &[
    ("--hash", true),
    ("--global-option", true),
    ("--config-settings", true),
    ("-C", true),
];

/// File names pip installs directly rather than by project name.
const ARCHIVES: &[&str] = &[
    ".whl", ".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tar",
];

pub(super) fn parse(text: &str, lock: &mut LockFile) -> Result<(), Bad> {
    for (line, logical) in logical_lines(text) {
        let (requirement, options) = split_options(&logical);
        if requirement.is_empty() {
            file_options(options, line, lock)?;
        } else {
            self::requirement(requirement, options, line, lock)?;
        }
    }
    Ok(())
}

/// pip's logical lines: continuations joined, comments and blank lines dropped, each with the
/// number of its first physical line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (number, physical) in (1..).zip(text.lines()) {
        let (first, mut joined) = pending.take().unwrap_or((number, String::new()));
        match (comment_start(physical), physical.strip_suffix('\\')) {
            (None, Some(head)) => {
                joined.push_str(head);
                pending = Some((first, joined));
                continue;
            }
            // A comment ends a continuation, even after a backslash.
            (Some(at), _) => joined.push_str(&physical[..at]),
            (None, None) => joined.push_str(physical),
        }
        lines.push((first, joined));
    }
    lines.extend(pending);
    lines
        .into_iter()
        .map(|(first, joined)| (first, joined.trim().to_owned()))
        .filter(|(_, joined)| !joined.is_empty())
        .collect()
}

/// Where a comment starts: a `#` at the start of the line or after whitespace (elsewhere it is a
/// URL's fragment).
fn comment_start(line: &str) -> Option<usize> {
    line.char_indices()
        .find(|&(at, c)| c == '#' && (at == 0 || line[..at].ends_with(char::is_whitespace)))
        .map(|(at, _)| at)
}

/// Splits a line where its options start, as pip does: at the first word starting with `-`.
fn split_options(line: &str) -> (&str, &str) {
    let mut word_start = true;
    for (at, c) in line.char_indices() {
        if word_start && c == '-' {
            return (line[..at].trim(), &line[at..]);
        }
        word_start = c.is_whitespace();
    }
    (line.trim(), "")
}

fn file_options(text: &str, line: usize, lock: &mut LockFile) -> Result<(), Bad> {
    for (name, value) in options(text, line, FILE_OPTIONS)? {
        match name {
            "-r" | "--requirement" if value.contains("://") => lock.skip(value, "a requirements file by URL"),
            "-r" | "--requirement" => lock.includes.push(value),
            "-e" | "--editable" => lock.skip(value, "an editable install"),
            _ => {}
        }
    }
    Ok(())
}

fn requirement(text: &str, trailing: &str, line: usize, lock: &mut LockFile) -> Result<(), Bad> {
    if is_direct_reference(text) {
        lock.skip(text, "a direct URL reference");
        return Ok(());
    }
    if is_location(text) {
        lock.skip(text, "a local path or URL, not a project on an index");
        return Ok(());
    }
    let (project, specifiers) = name_and_specifiers(text).map_err(|reason| Bad::new(line, reason))?;
    let mut hashes = Vec::new();
    for (name, value) in options(trailing, line, REQUIREMENT_OPTIONS)? {
        if name == "--hash" {
            hashes.push(digest(&value).map_err(|reason| Bad::new(line, reason))?);
        }
    }
    lock.python.push(PythonWant {
        project,
        pick: Pick::Requirement { specifiers, hashes },
    });
    Ok(())
}

/// `name [extras] @ url`.
fn is_direct_reference(text: &str) -> bool {
    let rest = text.trim_start_matches(is_name_char).trim_start();
    let rest = match rest.strip_prefix('[') {
        Some(extras) => extras.split_once(']').map_or("", |(_, rest)| rest.trim_start()),
        None => rest,
    };
    rest.starts_with('@')
}

/// A URL, a path or an archive's file name in place of a project name.
fn is_location(text: &str) -> bool {
    let first = text
        .split(|c: char| c.is_whitespace() || c == ';')
        .next()
        .unwrap_or(text);
    let lower = first.to_ascii_lowercase();
    first.contains("://")
        || lower.starts_with("file:")
        || first.starts_with('.')
        || first.contains(['/', '\\'])
        || ARCHIVES.iter().any(|extension| lower.ends_with(extension))
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// PEP 508's `name [extras] specifiers ; marker`, without the URL form: the name and the
/// specifiers with whitespace taken out. Extras and the marker say nothing about which files.
fn name_and_specifiers(text: &str) -> Result<(String, String), String> {
    let head = text.split(';').next().unwrap_or(text).trim();
    let name_end = head.find(|c| !is_name_char(c)).unwrap_or(head.len());
    let (name, rest) = head.split_at(name_end);
    let well_formed = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !well_formed(name.chars().next()) || !well_formed(name.chars().last()) {
        return Err(format!("{text:?} does not start with a project name"));
    }
    let mut rest = rest.trim_start();
    if let Some(extras) = rest.strip_prefix('[') {
        let (extras, after) = extras
            .split_once(']')
            .ok_or_else(|| format!("the extras of {name} have no closing `]`"))?;
        if !extras
            .chars()
            .all(|c| is_name_char(c) || c == ',' || c.is_whitespace())
        {
            return Err(format!("the extras of {name} are not names: {extras:?}"));
        }
        rest = after.trim_start();
    }
    let rest = match rest.strip_prefix('(') {
        Some(inner) => inner
            .strip_suffix(')')
            .ok_or_else(|| format!("the specifiers of {name} have no closing `)`"))?,
        None => rest,
    };
    let rest = rest.trim();
    if !rest.is_empty() {
        pep440_rs::VersionSpecifiers::from_str(rest).map_err(|err| {
            // The error's first line says what is wrong; the others draw a caret under it.
            let shown = err.to_string();
            let first = shown.lines().next().unwrap_or_default();
            let why = first
                .trim_start_matches("Failed to parse version: ")
                .trim_end_matches(':');
            format!("invalid version specifiers for {name}, {rest:?}: {why}")
        })?;
    }
    Ok((
        name.to_owned(),
        rest.chars().filter(|c| !c.is_whitespace()).collect(),
    ))
}

/// The options in `text` that `known` lists, each with its value (empty for a flag), in order.
fn options(
    text: &str,
    line: usize,
    known: &[(&'static str, bool)],
) -> Result<Vec<(&'static str, String)>, Bad> {
    let mut words = words(text, line)?.into_iter();
    let mut found = Vec::new();
    while let Some(word) = words.next() {
        // `--name=value`, `--name value`, `-xvalue`, `-x value`.
        let (name, attached) = if word.starts_with("--") {
            match word.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (word.as_str(), None),
            }
        } else if word.starts_with('-') && word.len() > 2 && word.is_char_boundary(2) {
            let (name, value) = word.split_at(2);
            (name, Some(value))
        } else {
            (word.as_str(), None)
        };
        let Some(&(name, takes_value)) = known.iter().find(|(option, _)| *option == name) else {
            return Err(Bad::new(
                line,
                format!("unexpected {word:?} (not an option allowed here)"),
            ));
        };
        let value = match (takes_value, attached) {
            (true, Some(value)) => value.to_owned(),
            (true, None) => words
                .next()
                .ok_or_else(|| Bad::new(line, format!("{name} needs a value")))?,
            (false, None) => String::new(),
            (false, Some(_)) => return Err(Bad::new(line, format!("{name} takes no value"))),
        };
        found.push((name, value));
    }
    Ok(found)
}

/// Splits options into words as pip does (with `shlex`): apart at whitespace, quotes grouping.
fn words(text: &str, line: usize) -> Result<Vec<String>, Bad> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '"' | '\'' => {
                let word = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some(quoted) if quoted == c => break,
                        Some(quoted) => word.push(quoted),
                        None => return Err(Bad::new(line, format!("a {c} quote is not closed"))),
                    }
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::super::{Digest, Format, LockError, Skipped, parse};
    use super::*;

    const SIX_HASH: &str = "1e61c37477a1626458e36f7b1d82aa5c9b094fa4802892072e49de9c60c4c926";
    const SIX_SDIST_HASH: &str = "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254";

    fn requirement(project: &str, specifiers: &str, hashes: &[&str]) -> PythonWant {
        PythonWant {
            project: project.into(),
            pick: Pick::Requirement {
                specifiers: specifiers.into(),
                hashes: hashes
                    .iter()
                    .map(|hex| Digest {
                        algorithm: "sha256".into(),
                        hex: (*hex).into(),
                    })
                    .collect(),
            },
        }
    }

    fn skipped(what: &str, why: &str) -> Skipped {
        Skipped {
            what: what.into(),
            why: why.into(),
        }
    }

    #[test]
    fn a_pip_compile_output_with_hashes_markers_and_extras() {
        let text = format!(
            "#\n\
             # This file is autogenerated by pip-compile with Python 3.12\n\
             #\n\
             --index-url https://index.example/simple/\n\
             --extra-index-url=https://mirror.example/simple/\n\
             --trusted-host mirror.example\n\
             \n\
             -r base.txt\n\
             --requirement=extra/test.txt\n\
             -c constraints.txt\n\
             six==1.16.0 \\\n    \
                 --hash=sha256:{SIX_SDIST_HASH} \\\n    \
                 --hash sha256:{}\n    \
                 # via python-dateutil\n\
             requests[socks,security] >= 2.31, <3 ; python_version >= \"3.8\"  # pinned loosely\n\
             Django~=4.2\n\
             zope.interface (>=6.0)\n\
             typing_extensions\n\
             urllib3==2.2.3; sys_platform == \"linux\" --hash=SHA256:{}\n",
            SIX_HASH.to_uppercase(),
            SIX_HASH.to_uppercase(),
        );
        let lock = parse("requirements.txt", &text).unwrap();
        assert_eq!(lock.format, Format::Requirements);
        assert_eq!(lock.includes, ["base.txt", "extra/test.txt"]);
        assert_eq!(
            lock.python,
            [
                requirement("six", "==1.16.0", &[SIX_SDIST_HASH, SIX_HASH]),
                requirement("requests", ">=2.31,<3", &[]),
                requirement("Django", "~=4.2", &[]),
                requirement("zope.interface", ">=6.0", &[]),
                requirement("typing_extensions", "", &[]),
                requirement("urllib3", "==2.2.3", &[SIX_HASH]),
            ]
        );
        assert!(lock.skipped.is_empty());
        assert!(lock.hex.is_empty());
    }

    #[test]
    fn editables_urls_and_paths_are_skipped() {
        let text = "-e .\n\
                    --editable=git+https://git.example/org/tool.git#egg=tool\n\
                    mylib @ https://files.example/packages/mylib-1.0-py3-none-any.whl\n\
                    other@ file:///srv/wheels/other-2.0.tar.gz ; python_version < \"3.13\"\n\
                    ./vendor/pkg\n\
                    https://files.example/packages/six-1.16.0-py2.py3-none-any.whl\n\
                    git+https://git.example/org/dep.git@v1#egg=dep\n\
                    six-1.16.0-py2.py3-none-any.whl\n\
                    -r https://config.example/requirements.txt\n\
                    attrs==24.2.0\n";
        let lock = parse("requirements.in", text).unwrap();
        assert_eq!(
            lock.skipped,
            [
                skipped(".", "an editable install"),
                skipped(
                    "git+https://git.example/org/tool.git#egg=tool",
                    "an editable install"
                ),
                skipped(
                    "mylib @ https://files.example/packages/mylib-1.0-py3-none-any.whl",
                    "a direct URL reference"
                ),
                skipped(
                    "other@ file:///srv/wheels/other-2.0.tar.gz ; python_version < \"3.13\"",
                    "a direct URL reference"
                ),
                skipped("./vendor/pkg", "a local path or URL, not a project on an index"),
                skipped(
                    "https://files.example/packages/six-1.16.0-py2.py3-none-any.whl",
                    "a local path or URL, not a project on an index"
                ),
                skipped(
                    "git+https://git.example/org/dep.git@v1#egg=dep",
                    "a local path or URL, not a project on an index"
                ),
                skipped(
                    "six-1.16.0-py2.py3-none-any.whl",
                    "a local path or URL, not a project on an index"
                ),
                skipped(
                    "https://config.example/requirements.txt",
                    "a requirements file by URL"
                ),
            ]
        );
        assert_eq!(lock.python, [requirement("attrs", "==24.2.0", &[])]);
        assert!(lock.includes.is_empty());
    }

    #[test]
    fn continuations_join_and_a_trailing_one_ends_the_file() {
        let text = "\\\n  requests\\\n>=2\\\n";
        let lock = parse("r.txt", text).unwrap();
        assert_eq!(lock.python, [requirement("requests", ">=2", &[])]);
        assert_eq!(
            logical_lines("a \\\n# note \\\nb\r\nc # d\r\n"),
            [(1, "a".to_owned()), (3, "b".to_owned()), (4, "c".to_owned())]
        );
    }

    #[test]
    fn quoted_option_values() {
        let lock = parse("r.txt", "-r \"my reqs.txt\" --pre\n").unwrap();
        assert_eq!(lock.includes, ["my reqs.txt"]);
    }

    fn syntax_error(text: &str) -> (usize, String) {
        match parse("requirements.txt", text) {
            Err(LockError::Syntax { path, line, reason }) => {
                assert_eq!(path, "requirements.txt");
                (line, reason)
            }
            other => panic!("expected a syntax error for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn malformed_lines_are_errors_on_their_first_physical_line() {
        let (line, reason) = syntax_error("six==1.16.0\n\nrequests \\\n  2.31\n");
        assert_eq!(line, 3);
        assert!(
            reason.contains("invalid version specifiers for requests"),
            "{reason}"
        );

        let (line, reason) = syntax_error("# hashes\nsix==1.16.0 \\\n  --hash=sha256\n");
        assert_eq!(line, 2);
        assert!(
            reason.contains("not a hash of the form algorithm:hex"),
            "{reason}"
        );

        let (line, reason) = syntax_error("six==1.16.0 --hash=md5:zz\n");
        assert_eq!(line, 1);
        assert!(reason.contains("not a hash"), "{reason}");

        let (line, reason) = syntax_error("\n--frobnicate\n");
        assert_eq!(line, 2);
        assert!(reason.contains("--frobnicate"), "{reason}");

        assert!(syntax_error("-r\n").1.contains("-r needs a value"));
        assert!(syntax_error("--pre=yes\n").1.contains("takes no value"));
        assert!(
            syntax_error("six --index-url https://index.example/simple/\n")
                .1
                .contains("--index-url")
        );
        assert!(syntax_error("requests[socks\n").1.contains("no closing `]`"));
        assert!(syntax_error("requests (>=2\n").1.contains("no closing `)`"));
        assert!(syntax_error("_private==1\n").1.contains("project name"));
        assert!(syntax_error("=={1}\n").1.contains("project name"));
        assert!(syntax_error("-r 'unclosed\n").1.contains("not closed"));
    }
}
