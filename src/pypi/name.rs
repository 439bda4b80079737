//! Project names (PEP 503 normalization, PEP 508 validity) and distribution filenames.

use thiserror::Error;

/// Longest project name accepted, in bytes: longer names are not real projects and only cost us.
pub const MAX_PROJECT_NAME_LEN: usize = 200;

/// Longest filename accepted, in bytes (the usual file-system limit for one path component).
pub const MAX_FILENAME_LEN: usize = 255;

/// Why a project name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("the project name is empty")]
    Empty,
    #[error("the project name is {len} bytes long; at most {MAX_PROJECT_NAME_LEN} are allowed")]
    TooLong { len: usize },
    #[error(
        "the project name contains the non-ASCII character '{0}'; only ASCII letters, digits, '.', '_' and '-' are allowed"
    )]
    NonAscii(char),
    #[error(
        "the project name contains the character '{}'; only ASCII letters, digits, '.', '_' and '-' are allowed",
        .0.escape_default()
    )]
    BadCharacter(char),
    #[error("the project name must start with an ASCII letter or digit")]
    BadStart,
    #[error("the project name must end with an ASCII letter or digit")]
    BadEnd,
}

fn is_separator(c: char) -> bool {
    matches!(c, '-' | '_' | '.')
}

/// The characters of `name` normalized one by one, so comparisons need no allocation.
fn normalized_chars(name: &str) -> impl Iterator<Item = char> + '_ {
    let mut previous_was_separator = false;
    name.chars()
        .filter_map(move |c| {
            let sep = is_separator(c);
            let skip = sep && previous_was_separator;
            previous_was_separator = sep;
            match (skip, sep) {
                (true, _) => None,
                (false, true) => Some('-'),
                (false, false) => Some(c),
            }
        })
        .flat_map(char::to_lowercase)
}

/// PEP 503 normalization: lower-case, every run of `-`, `_`, `.` becomes one `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    out.extend(normalized_chars(name));
    out
}

/// Whether `name` normalizes to `normalized` (which must already be normalized).
fn normalizes_to(name: &str, normalized: &str) -> bool {
    normalized_chars(name).eq(normalized.chars())
}

/// Accepts exactly the valid PEP 508 names (`^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$`, any case) of
/// at most [`MAX_PROJECT_NAME_LEN`] bytes. Everything a path could be built from (`..`, `/`, `%`) fails.
pub fn validate_project_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_PROJECT_NAME_LEN {
        return Err(NameError::TooLong { len: name.len() });
    }
    if let Some(c) = name.chars().find(|c| !c.is_ascii()) {
        return Err(NameError::NonAscii(c));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !c.is_ascii_alphanumeric() && !is_separator(c))
    {
        return Err(NameError::BadCharacter(c));
    }
    let bytes = name.as_bytes();
    if !bytes[0].is_ascii_alphanumeric() {
        return Err(NameError::BadStart);
    }
    if !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
        return Err(NameError::BadEnd);
    }
    Ok(())
}

/// Whether `name` can be served as one path segment under a project without escaping it. No
/// distribution file name has white space or `<`, `>`, `&` (wheel and sdist names escape them):
/// a name that does is a broken or hostile entry, and would need escaping in every page.
pub fn is_safe_filename(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_FILENAME_LEN
        && !name.starts_with('.')
        && !name
            .chars()
            .any(|c| matches!(c, '/' | '\\' | '<' | '>' | '&') || c.is_control() || c.is_whitespace())
}

/// Archive suffixes of source distributions.
const SDIST_SUFFIXES: [&str; 6] = [".tar.bz2", ".tar.gz", ".tar.xz", ".tar", ".tgz", ".zip"];

fn strip_suffix_ignore_case<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = s.len().checked_sub(suffix.len())?;
    let (stem, tail) = (s.get(..cut)?, s.get(cut..)?);
    tail.eq_ignore_ascii_case(suffix).then_some(stem)
}

/// The version in a wheel, egg or sdist filename of project `normalized_project`, or `None` when the
/// filename is of another kind or names another project. Used to derive PEP 700 `versions` for
/// upstreams that give none.
pub fn version_from_filename(filename: &str, normalized_project: &str) -> Option<String> {
    // Wheels and eggs escape `-` inside the name and version, so the fields split cleanly.
    let binary = strip_suffix_ignore_case(filename, ".whl")
        .map(|stem| (stem, 5..=6))
        .or_else(|| strip_suffix_ignore_case(filename, ".egg").map(|stem| (stem, 2..=4)));
    if let Some((stem, field_counts)) = binary {
        let fields: Vec<&str> = stem.split('-').collect();
        if !field_counts.contains(&fields.len()) || fields[1].is_empty() {
            return None;
        }
        return normalizes_to(fields[0], normalized_project).then(|| fields[1].to_owned());
    }
    // Sdist names may contain `-`: cut at each `-` until the prefix is the project.
    let stem = SDIST_SUFFIXES
        .iter()
        .find_map(|suffix| strip_suffix_ignore_case(filename, suffix))?;
    stem.match_indices('-').find_map(|(i, _)| {
        let version = &stem[i + 1..];
        (!version.is_empty() && normalizes_to(&stem[..i], normalized_project)).then(|| version.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_table() {
        for (input, expected) in [
            ("Django", "django"),
            ("zope.interface", "zope-interface"),
            ("Foo__Bar", "foo-bar"),
            ("a-_.-b", "a-b"),
            ("A.B.C", "a-b-c"),
            ("already-normal", "already-normal"),
            ("trailing_", "trailing-"),
            ("", ""),
        ] {
            assert_eq!(normalize(input), expected, "normalize({input:?})");
        }
    }

    #[test]
    fn valid_names() {
        for name in ["a", "A1", "requests", "zope.interface", "Foo_Bar-baz.2", "9"] {
            assert_eq!(validate_project_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn invalid_names() {
        let long = "a".repeat(201);
        for (name, expected) in [
            ("", NameError::Empty),
            ("..", NameError::BadStart),
            (".", NameError::BadStart),
            ("a/b", NameError::BadCharacter('/')),
            ("%2f", NameError::BadCharacter('%')),
            ("a\\b", NameError::BadCharacter('\\')),
            ("a b", NameError::BadCharacter(' ')),
            (long.as_str(), NameError::TooLong { len: 201 }),
            ("café", NameError::NonAscii('é')),
            ("-foo", NameError::BadStart),
            ("foo.", NameError::BadEnd),
        ] {
            assert_eq!(validate_project_name(name), Err(expected), "{name:?}");
        }
        assert_eq!(validate_project_name(&"a".repeat(200)), Ok(()));
    }

    #[test]
    fn name_error_messages_say_what_is_wrong() {
        assert_eq!(
            NameError::TooLong { len: 201 }.to_string(),
            "the project name is 201 bytes long; at most 200 are allowed"
        );
        assert!(NameError::BadCharacter('/').to_string().contains("'/'"));
        assert!(NameError::BadCharacter('\n').to_string().contains("'\\n'"));
        assert!(NameError::NonAscii('é').to_string().contains("'é'"));
    }

    #[test]
    fn safe_filenames() {
        for name in ["foo-1.0.tar.gz", "foo-1.0+local-py3-none-any.whl", "a"] {
            assert!(is_safe_filename(name), "{name}");
        }
        let long = "a".repeat(256);
        for name in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a\\b",
            "a\0b",
            "a\nb",
            "a\u{7f}",
            "a b.tar.gz",
            "a\u{a0}b.tar.gz",
            "a<b.tar.gz",
            "a>b.tar.gz",
            "a&b.tar.gz",
            long.as_str(),
        ] {
            assert!(!is_safe_filename(name), "{name:?}");
        }
        assert!(is_safe_filename(&"a".repeat(255)));
    }

    #[test]
    fn versions_from_filenames() {
        for (filename, project, expected) in [
            ("foo-1.0-py3-none-any.whl", "foo", Some("1.0")),
            (
                "Foo_Bar-2.0.1-1-cp312-cp312-manylinux_2_17_x86_64.whl",
                "foo-bar",
                Some("2.0.1"),
            ),
            ("foo-1.0.tar.gz", "foo", Some("1.0")),
            ("foo-bar-1.0rc1.tar.gz", "foo-bar", Some("1.0rc1")),
            ("Foo.Bar-1.0.ZIP", "foo-bar", Some("1.0")),
            ("foo-1.0.tar.bz2", "foo", Some("1.0")),
            ("foo-1.0.tar.xz", "foo", Some("1.0")),
            ("foo-1.0.tgz", "foo", Some("1.0")),
            ("foo-1.0.tar", "foo", Some("1.0")),
            ("foo-1.0-py2.7.egg", "foo", Some("1.0")),
            ("foo_bar-3-py2.7-linux_x86_64.egg", "foo-bar", Some("3")),
            ("other-1.0.tar.gz", "foo", None),
            ("other-1.0-py3-none-any.whl", "foo", None),
            ("foo-1.0.exe", "foo", None),
            ("foo-.tar.gz", "foo", None),
            ("foo.tar.gz", "foo", None),
            ("foo-1.0-py3.whl", "foo", None),
        ] {
            assert_eq!(
                version_from_filename(filename, project).as_deref(),
                expected,
                "{filename}"
            );
        }
    }
}
