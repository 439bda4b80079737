//! `[hex]`: the hex repository upstream, its TTL and the key its registry
//! files are signed with.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

use super::pypi::valid_index_name;
use super::values::{Secret, UpstreamUrls, duration};

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HexConfig {
    pub enabled: bool,
    /// The hex repository: one URL, or a pool of equivalent ones.
    pub upstream_url: UpstreamUrls,
    #[serde(deserialize_with = "duration")]
    pub ttl: Duration,
    /// PEM; empty: the built-in hex.pm key.
    pub public_key: String,
    /// A PEM RSA private key: registry files go out without the releases the release policy
    /// holds back, signed with it. Empty: registry files pass through as the upstream signed them.
    pub resign_key: Secret,
    /// Hosted repositories: the team's own packages at `/hex/repos/{name}`.
    #[serde(deserialize_with = "hosted_repositories")]
    pub hosted: Vec<HexHostedConfig>,
}

/// One hosted hex repository (`[[hex.hosted]]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HexHostedConfig {
    /// Lower-case letters, digits, `-` and `_`: a path segment and a token scope.
    pub name: String,
    /// A PEM RSA private key file; the registry files are signed with it.
    pub signing_key: PathBuf,
    /// Names the repository does not host come from the hex upstream, re-signed.
    #[serde(default = "fallback_default")]
    pub fallback: bool,
}

fn fallback_default() -> bool {
    true
}

fn hosted_repositories<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<HexHostedConfig>, D::Error> {
    let repositories = Vec::<HexHostedConfig>::deserialize(d)?;
    let mut seen = std::collections::HashSet::new();
    for repository in &repositories {
        let name = &repository.name;
        if !valid_index_name(name) {
            return Err(de::Error::custom(format!(
                "hosted repository name {name:?}: use 1-64 lower-case letters, digits, '-' or '_'"
            )));
        }
        if !seen.insert(name.as_str()) {
            return Err(de::Error::custom(format!(
                "hosted repository {name:?} is named twice"
            )));
        }
        if repository.signing_key.as_os_str().is_empty() {
            return Err(de::Error::custom(format!(
                "hosted repository {name:?}: signing_key names no file"
            )));
        }
    }
    Ok(repositories)
}

impl HexConfig {
    /// A hosted repository that falls back to the upstream needs the hex mirror.
    pub(super) fn check_hosted(&self) -> Result<(), (&'static str, String)> {
        match self.hosted.iter().find(|h| h.fallback && !self.enabled) {
            Some(h) => Err((
                "hex.hosted",
                format!(
                    "{:?} falls back to the hex upstream, which hex.enabled = false turns off \
                     (set fallback = false, or turn the mirror on)",
                    h.name
                ),
            )),
            None => Ok(()),
        }
    }
}

impl Default for HexConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            upstream_url: "https://repo.hex.pm"
                .parse()
                .expect("the built-in hex URL is valid"),
            ttl: Duration::from_secs(30 * 60),
            public_key: String::new(),
            resign_key: Secret::default(),
            hosted: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{file_err, load_ok, toml_file, with_file};

    #[test]
    fn hosted_repositories_are_tables_with_a_key_and_fallback_on_by_default() {
        let (_dir, path) = toml_file(
            "[[hex.hosted]]\nname = \"team\"\nsigning_key = \"/k/team.pem\"\n\n\
             [[hex.hosted]]\nname = \"solo\"\nsigning_key = \"/k/solo.pem\"\nfallback = false\n",
        );
        let hosted = load_ok(&[], &with_file(&path)).config.hex.hosted;
        assert_eq!(hosted.len(), 2);
        assert_eq!(hosted[0].name, "team");
        assert_eq!(hosted[0].signing_key, std::path::Path::new("/k/team.pem"));
        assert!(hosted[0].fallback);
        assert!(!hosted[1].fallback);
        for (text, why) in [
            (
                "[[hex.hosted]]\nname = \"Team\"\nsigning_key = \"/k\"\n",
                "hosted repository name \"Team\"",
            ),
            ("[[hex.hosted]]\nname = \"team\"\n", "signing_key"),
            (
                "[[hex.hosted]]\nname = \"team\"\nsigning_key = \"\"\n",
                "signing_key names no file",
            ),
            (
                "[[hex.hosted]]\nname = \"a\"\nsigning_key = \"/k\"\n[[hex.hosted]]\nname = \"a\"\nsigning_key = \"/k\"\n",
                "named twice",
            ),
            (
                "[[hex.hosted]]\nname = \"a\"\nsigning_key = \"/k\"\nurl = \"x\"\n",
                "unknown field",
            ),
            (
                "[hex]\nenabled = false\n[[hex.hosted]]\nname = \"a\"\nsigning_key = \"/k\"\n",
                "hex.enabled = false",
            ),
        ] {
            let err = file_err(text);
            assert!(err.contains(why), "{text}: {err}");
        }
        let (_dir, path) = toml_file(
            "[hex]\nenabled = false\n[[hex.hosted]]\nname = \"a\"\nsigning_key = \"/k\"\nfallback = false\n",
        );
        assert_eq!(load_ok(&[], &with_file(&path)).config.hex.hosted.len(), 1);
    }
}
