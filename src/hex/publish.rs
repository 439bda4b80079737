//! A release tarball as a hex client publishes it, checked before a hosted repository takes it:
//! the tarball's format and inner checksum, its `metadata.config` (name, version, requirements,
//! build tools) and hex's name rules. Pure: the caller stores what passes.

use thiserror::Error;

use super::proto::Dependency;
use super::tarball::{TarballError, check_tarball, read_outer_tarball};
use super::terms::{self, Term};

/// A release that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    pub name: String,
    pub version: String,
    /// sha256 of the whole tarball (the registry's `outer_checksum`).
    pub outer_checksum: [u8; 32],
    /// The tarball's `CHECKSUM` member, checked against its contents.
    pub inner_checksum: [u8; 32],
    /// Its requirements as the registry lists them.
    pub dependencies: Vec<Dependency>,
    pub build_tools: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PublishError {
    #[error("{0}")]
    Tarball(#[from] TarballError),
    #[error("metadata.config, line {line}: {reason}")]
    Metadata { line: usize, reason: String },
    #[error("metadata.config has no {0}")]
    Missing(&'static str),
    #[error("the package name {name:?} is not valid: {reason}")]
    Name { name: String, reason: String },
    #[error("the version {0:?} is not a SemVer version (as 1.2.3 or 1.2.3-rc.1)")]
    Version(String),
    #[error("the requirement {requirement:?} on {package} is not a valid version requirement")]
    Requirement { package: String, requirement: String },
}

/// Checks the tarball `tar` and reads what the registry will say of it.
pub fn check_publication(tar: &[u8]) -> Result<Publication, PublishError> {
    let checksums = check_tarball(tar)?;
    let metadata = read_outer_tarball(tar)?.metadata;
    let text = std::str::from_utf8(metadata).map_err(|_| PublishError::Metadata {
        line: 1,
        reason: "it is not UTF-8".into(),
    })?;
    let terms = terms::erlang(text).map_err(|bad| PublishError::Metadata {
        line: bad.line,
        reason: bad.reason,
    })?;
    let field = |key: &str| {
        terms.iter().find_map(|term| match term.tuple() {
            Some([k, value]) if k.text() == Some(key) => Some(value),
            _ => None,
        })
    };
    let text_field = |key: &'static str| -> Result<String, PublishError> {
        field(key)
            .and_then(Term::text)
            .map(str::to_owned)
            .ok_or(PublishError::Missing(key))
    };
    let name = text_field("name")?;
    super::validate_package_name(&name).map_err(|reason| PublishError::Name {
        name: name.clone(),
        reason: reason.to_string(),
    })?;
    let version = text_field("version")?;
    semver::Version::parse(&version).map_err(|_| PublishError::Version(version.clone()))?;
    let dependencies = match field("requirements") {
        Some(requirements) => dependencies(requirements)?,
        None => Vec::new(),
    };
    let build_tools = field("build_tools")
        .and_then(Term::list)
        .map(|tools| tools.iter().filter_map(Term::name).map(str::to_owned).collect())
        .unwrap_or_default();
    Ok(Publication {
        name,
        version,
        outer_checksum: checksums.outer,
        inner_checksum: checksums.inner,
        dependencies,
        build_tools,
    })
}

/// `requirements` in the forms clients write: a map from package name to its properties
/// (rebar3's metadata), the same as a property list of `{Name, Properties}` (as hex_core writes
/// that map to `metadata.config`), or a list of property lists each naming its package (mix).
fn dependencies(requirements: &Term) -> Result<Vec<Dependency>, PublishError> {
    let bad = |term: &Term, reason: &str| PublishError::Metadata {
        line: term.line,
        reason: reason.to_owned(),
    };
    let mut out = Vec::new();
    let entries: Vec<(Option<&str>, Properties<'_>)> = if let Some(map) = requirements.map() {
        map.iter()
            .map(|(name, props)| {
                Ok((
                    name.name(),
                    Properties::of(props)
                        .ok_or_else(|| bad(props, "a requirement is not a map or a property list"))?,
                ))
            })
            .collect::<Result<_, PublishError>>()?
    } else if let Some(list) = requirements.list() {
        list.iter()
            .map(|entry| {
                // hex_core writes rebar3's map as a property list: `{Name, Properties}`.
                let (name, props) = match entry.tuple() {
                    Some([name, props]) if name.name().is_some() => (name.name(), props),
                    _ => (None, entry),
                };
                Ok((
                    name,
                    Properties::of(props)
                        .ok_or_else(|| bad(props, "a requirement is not a map or a property list"))?,
                ))
            })
            .collect::<Result<_, PublishError>>()?
    } else {
        return Err(bad(requirements, "requirements is neither a map nor a list"));
    };
    for (key, props) in entries {
        let package = props
            .text("name")
            .or(key)
            .ok_or_else(|| bad(requirements, "a requirement names no package"))?
            .to_owned();
        super::validate_package_name(&package).map_err(|reason| PublishError::Name {
            name: package.clone(),
            reason: reason.to_string(),
        })?;
        let requirement = props
            .text("requirement")
            .ok_or_else(|| {
                bad(
                    requirements,
                    &format!("the requirement on {package} has no version requirement"),
                )
            })?
            .to_owned();
        if crate::policy::VersionMatcher::parse(crate::ecosystem::Ecosystem::Hex, &requirement).is_err()
            || requirement.trim().is_empty()
        {
            return Err(PublishError::Requirement { package, requirement });
        }
        let app = props.text("app").filter(|app| *app != package).map(str::to_owned);
        out.push(Dependency {
            requirement,
            optional: Some(props.atom("optional") == Some("true")),
            app,
            // Kept as written: what it means depends on the repository serving it.
            repository: props.text("repository").map(str::to_owned),
            package,
        });
    }
    out.sort_by(|a, b| a.package.cmp(&b.package));
    Ok(out)
}

/// A requirement's properties: `#{<<"app">> => ...}` or `[{<<"app">>, ...}]`.
struct Properties<'a>(Vec<(&'a str, &'a Term)>);

impl<'a> Properties<'a> {
    fn of(term: &'a Term) -> Option<Self> {
        if let Some(map) = term.map() {
            return Some(Self(
                map.iter().filter_map(|(k, v)| Some((k.name()?, v))).collect(),
            ));
        }
        let list = term.list()?;
        Some(Self(
            list.iter()
                .filter_map(|item| match item.tuple() {
                    Some([k, v]) => Some((k.name()?, v)),
                    _ => None,
                })
                .collect(),
        ))
    }

    fn get(&self, key: &str) -> Option<&'a Term> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn text(&self, key: &str) -> Option<&'a str> {
        self.get(key).and_then(Term::text)
    }

    fn atom(&self, key: &str) -> Option<&'a str> {
        self.get(key).and_then(Term::atom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex::test_support::{package_tarball, tar};

    const CONTENTS: &[u8] = b"not really gzip, but opaque to the checks";

    /// A version 3 tarball with this metadata, as hex_core's `hex_tarball:create/2` writes one,
    /// its CHECKSUM member `checksum` when given (else the right one).
    fn tarball(metadata: &str, checksum: Option<&str>) -> Vec<u8> {
        match checksum {
            None => package_tarball(metadata.as_bytes(), CONTENTS),
            Some(checksum) => tar(&[
                ("VERSION", b"3"),
                ("CHECKSUM", checksum.as_bytes()),
                ("metadata.config", metadata.as_bytes()),
                ("contents.tar.gz", CONTENTS),
            ]),
        }
    }

    const REBAR3_METADATA: &str = r#"{<<"app">>,<<"teamlib">>}.
{<<"build_tools">>,[<<"rebar3">>]}.
{<<"description">>,<<"A team library">>}.
{<<"files">>,[<<"src/teamlib.erl">>]}.
{<<"licenses">>,[<<"Apache-2.0">>]}.
{<<"name">>,<<"teamlib">>}.
{<<"requirements">>,
 #{<<"fixfoo">> =>
       #{<<"app">> => <<"fixfoo">>,<<"optional">> => false,
         <<"requirement">> => <<"~> 1.0">>}}}.
{<<"version">>,<<"0.2.0">>}.
"#;

    const MIX_METADATA: &str = r#"{<<"links">>,[]}.
{<<"name">>,<<"team_ex">>}.
{<<"version">>,<<"1.0.0-rc.1">>}.
{<<"app">>,<<"team_ex">>}.
{<<"build_tools">>,[<<"mix">>]}.
{<<"requirements">>,
 [[{<<"name">>,<<"jason">>},
   {<<"app">>,<<"jason">>},
   {<<"optional">>,true},
   {<<"requirement">>,<<"~> 1.4">>},
   {<<"repository">>,<<"hexpm">>}],
  [{<<"name">>,<<"teamlib">>},
   {<<"app">>,<<"team_lib">>},
   {<<"optional">>,false},
   {<<"requirement">>,<<">= 0.1.0 and < 1.0.0">>},
   {<<"repository">>,<<"team">>}]]}.
"#;

    #[test]
    fn a_rebar3_release_is_read_with_its_map_of_requirements() {
        let tar = tarball(REBAR3_METADATA, None);
        let release = check_publication(&tar).unwrap();
        assert_eq!(
            (release.name.as_str(), release.version.as_str()),
            ("teamlib", "0.2.0")
        );
        assert_eq!(release.build_tools, ["rebar3"]);
        assert_eq!(
            release.dependencies,
            [Dependency {
                package: "fixfoo".into(),
                requirement: "~> 1.0".into(),
                optional: Some(false),
                app: None,
                repository: None,
            }]
        );
        use sha2::Digest as _;
        assert_eq!(
            release.outer_checksum,
            <[u8; 32]>::from(sha2::Sha256::digest(&tar))
        );
    }

    #[test]
    fn requirements_as_hex_core_writes_them_are_read() {
        let metadata = REBAR3_METADATA.replace(
            "#{<<\"fixfoo\">> =>\n       #{<<\"app\">> => <<\"fixfoo\">>,<<\"optional\">> => false,\n         <<\"requirement\">> => <<\"~> 1.0\">>}}",
            "[{<<\"fixfoo\">>,\n   [{<<\"app\">>,<<\"fixfoo\">>},\n    {<<\"optional\">>,false},\n    {<<\"requirement\">>,<<\"~> 1.0\">>}]}]",
        );
        assert_ne!(metadata, REBAR3_METADATA);
        let release = check_publication(&tarball(&metadata, None)).unwrap();
        assert_eq!(release.dependencies.len(), 1);
        assert_eq!(release.dependencies[0].package, "fixfoo");
        assert_eq!(release.dependencies[0].requirement, "~> 1.0");
    }

    #[test]
    fn a_mix_release_is_read_with_its_list_of_requirements() {
        let release = check_publication(&tarball(MIX_METADATA, None)).unwrap();
        assert_eq!(
            (release.name.as_str(), release.version.as_str()),
            ("team_ex", "1.0.0-rc.1")
        );
        let deps: Vec<String> = release
            .dependencies
            .iter()
            .map(|d| format!("{} {:?} {:?} {:?}", d.package, d.optional, d.app, d.repository))
            .collect();
        assert_eq!(
            deps,
            [
                "jason Some(true) None Some(\"hexpm\")",
                "teamlib Some(false) Some(\"team_lib\") Some(\"team\")",
            ]
        );
    }

    #[test]
    fn what_is_wrong_is_named() {
        let tampered = tarball(REBAR3_METADATA, Some(&"AB".repeat(32)));
        assert!(matches!(
            check_publication(&tampered),
            Err(PublishError::Tarball(TarballError::InnerMismatch { .. }))
        ));
        let cases = [
            (
                REBAR3_METADATA.replace("<<\"0.2.0\">>", "<<\"0.2\">>"),
                "not a SemVer version",
            ),
            (
                REBAR3_METADATA.replace("<<\"name\">>,<<\"teamlib\">>", "<<\"name\">>,<<\"Team-Lib\">>"),
                "is not valid",
            ),
            (
                REBAR3_METADATA.replace("{<<\"version\">>,<<\"0.2.0\">>}.\n", ""),
                "has no version",
            ),
            (
                REBAR3_METADATA.replace("~> 1.0", "~> banana"),
                "not a valid version requirement",
            ),
            (
                REBAR3_METADATA.replace("{<<\"app\">>,<<\"teamlib\">>}.", "{<<\"app\">>,<<\"teamlib\">>"),
                "line",
            ),
        ];
        for (metadata, expected) in cases {
            let err = check_publication(&tarball(&metadata, None))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{expected:?} in {err:?}");
        }
    }
}
