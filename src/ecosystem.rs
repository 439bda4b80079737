//! The ecosystems pkgmirror mirrors: one name for each, used by the catalogue, the page store, the
//! cache flows and the UI alike.

/// The package ecosystems pkgmirror mirrors, as the catalogue, the page store and URLs name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ecosystem {
    #[default]
    Pypi,
    Hex,
}

impl Ecosystem {
    /// In the order the package list's tabs show them.
    pub const ALL: [Self; 2] = [Self::Pypi, Self::Hex];

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pypi" => Some(Self::Pypi),
            "hex" => Some(Self::Hex),
            _ => None,
        }
    }

    /// The catalogue's (and the URLs') name of the ecosystem.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pypi => "pypi",
            Self::Hex => "hex",
        }
    }

    /// How a page names the ecosystem.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pypi => "PyPI",
            Self::Hex => "Hex",
        }
    }

    /// What the ecosystem calls the things it lists.
    pub fn noun(self) -> &'static str {
        match self {
            Self::Pypi => "project",
            Self::Hex => "package",
        }
    }

    /// A search as typed, in the form the catalogue's names are stored: PyPI names are
    /// normalized (`Foo_Bar` finds `foo-bar`); hex names are only lower-cased (`_` is part of a
    /// hex name, and `-` or `.` never are, so normalizing would find nothing).
    pub fn search_fragment(self, search: &str) -> String {
        match self {
            Self::Pypi => crate::pypi::name::normalize(search),
            Self::Hex => search.to_lowercase(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecosystems_parse_and_search_their_own_way() {
        assert_eq!(Ecosystem::parse("hex"), Some(Ecosystem::Hex));
        assert_eq!(Ecosystem::parse("pypi"), Some(Ecosystem::Pypi));
        assert_eq!(Ecosystem::parse("PyPI"), None);
        assert_eq!(Ecosystem::Pypi.search_fragment("Foo_Bar.x"), "foo-bar-x");
        assert_eq!(Ecosystem::Hex.search_fragment("Phoenix_Live"), "phoenix_live");
    }
}
