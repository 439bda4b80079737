//! `[policy]`: which upstream releases the mirror holds back (a cooldown, a freeze date, and
//! allow and deny rules), for PyPI and hex alike.

use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::values::{NamePattern, duration};
use crate::ecosystem::Ecosystem;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Files uploaded less than this long ago are held back; zero: no cooldown.
    #[serde(deserialize_with = "duration")]
    pub min_release_age: Duration,
    /// Files uploaded after this time (unix seconds) are held back.
    #[serde(deserialize_with = "optional_time")]
    pub exclude_newer: Option<u64>,
    /// What stands in for an upload time an index does not give.
    pub unknown_upload_time: UnknownUploadTime,
    pub rules: Vec<PolicyRule>,
}

/// `policy.unknown_upload_time`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownUploadTime {
    /// The time this mirror first listed the file (never earlier than the real upload).
    #[default]
    FirstSeen,
    /// Such files pass the age and date checks.
    Allow,
    /// Such files are held back.
    Deny,
}

impl UnknownUploadTime {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FirstSeen => "first-seen",
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleAction {
    /// Exempt from the age and date checks.
    Allow,
    /// Always held back.
    Deny,
}

impl RuleAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// One `[[policy.rules]]` table: which releases it covers, and what it does to them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyRule {
    pub ecosystem: Ecosystem,
    /// Normalized as the ecosystem names projects.
    pub project: NamePattern,
    /// A PEP 440 specifier set (PyPI) or a hex version requirement; `None`: every version.
    pub versions: Option<String>,
    pub action: RuleAction,
    pub reason: String,
}

impl std::fmt::Display for PolicyRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.action.as_str(),
            self.ecosystem.as_str(),
            self.project
        )?;
        if let Some(versions) = &self.versions {
            write!(f, " {versions}")?;
        }
        Ok(())
    }
}

/// A `[[policy.rules]]` table, or the same in one line (as the environment and `config show`
/// write it): `ACTION ECOSYSTEM PROJECT [VERSIONS] [; REASON]`.
impl<'de> Deserialize<'de> for PolicyRule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            ecosystem: String,
            project: String,
            #[serde(default)]
            versions: Option<String>,
            action: RuleAction,
            #[serde(default)]
            reason: String,
        }
        #[derive(Deserialize)]
        #[serde(
            untagged,
            expecting = "a table (ecosystem, project, versions, action, reason) or \"ACTION ECOSYSTEM PROJECT [VERSIONS] [; REASON]\""
        )]
        enum Entry {
            Line(String),
            Table(Table),
        }
        let table = match Entry::deserialize(d)? {
            Entry::Table(table) => table,
            Entry::Line(line) => {
                let (rule, reason) = line.split_once(';').unwrap_or((&line, ""));
                let mut words = rule.split_whitespace();
                let (Some(action), Some(ecosystem), Some(project)) =
                    (words.next(), words.next(), words.next())
                else {
                    return Err(de::Error::custom(format!(
                        "{line:?}: write a rule as \"ACTION ECOSYSTEM PROJECT [VERSIONS] [; REASON]\""
                    )));
                };
                let action = match action {
                    "allow" => RuleAction::Allow,
                    "deny" => RuleAction::Deny,
                    other => return Err(de::Error::custom(format!("action {other:?}: use allow or deny"))),
                };
                let versions = words.collect::<Vec<_>>().join(" ");
                Table {
                    ecosystem: ecosystem.to_owned(),
                    project: project.to_owned(),
                    versions: Some(versions),
                    action,
                    reason: reason.to_owned(),
                }
            }
        };
        let ecosystem = Ecosystem::parse(&table.ecosystem)
            .ok_or_else(|| de::Error::custom(format!("ecosystem {:?}: use pypi or hex", table.ecosystem)))?;
        PolicyRule::new(
            ecosystem,
            &table.project,
            table.versions,
            table.action,
            table.reason,
        )
        .map_err(de::Error::custom)
    }
}

impl PolicyRule {
    /// The one-line form the configuration reads back.
    pub fn to_line(&self) -> String {
        if self.reason.is_empty() {
            self.to_string()
        } else {
            format!("{self}; {}", self.reason)
        }
    }
}

impl PolicyRule {
    /// A rule, checked: the pattern a valid name pattern, the versions a valid specifier set (or
    /// hex requirement).
    pub fn new(
        ecosystem: Ecosystem,
        project: &str,
        versions: Option<String>,
        action: RuleAction,
        reason: String,
    ) -> Result<Self, String> {
        let project = NamePattern::parse(project, ecosystem)?;
        let versions = versions.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        if let Some(versions) = &versions {
            crate::policy::VersionMatcher::parse(ecosystem, versions)?;
        }
        Ok(Self {
            ecosystem,
            project,
            versions,
            action,
            reason: reason.trim().to_owned(),
        })
    }
}

/// An RFC 3339 time (`2026-11-01T00:00:00Z`); empty: none.
fn optional_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let text = String::deserialize(d)?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    crate::policy::parse_time(text).map(Some).ok_or_else(|| {
        de::Error::custom(format!(
            "{text:?} is not an RFC 3339 time such as 2026-11-01T00:00:00Z"
        ))
    })
}
