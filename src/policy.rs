//! The release policy (`[policy]`): which upstream files the mirror holds back. Pure: the cache
//! flows ask it about each file with the times they know, and get a verdict.

use std::str::FromStr;

use crate::config::{PolicyConfig, PolicyRule, RuleAction, UnknownUploadTime};
use crate::ecosystem::Ecosystem;

/// What the policy is told about one file (or hex release).
#[derive(Debug, Clone, Copy)]
pub struct Release<'a> {
    pub ecosystem: Ecosystem,
    /// Normalized.
    pub project: &'a str,
    pub version: Option<&'a str>,
    /// When the index says it was uploaded (unix seconds), if it says.
    pub uploaded_at: Option<u64>,
    /// When this mirror first listed it.
    pub first_seen: u64,
}

impl<'a> Release<'a> {
    /// A file as the catalogue records it; one never seen before counts as seen `now`.
    pub fn of(
        ecosystem: Ecosystem,
        project: &'a str,
        file: &'a crate::storage::catalogue::FileRecord,
        now: u64,
    ) -> Self {
        Self {
            ecosystem,
            project,
            version: file.version.as_deref(),
            uploaded_at: file.upload_time.as_deref().and_then(parse_time),
            first_seen: file.first_seen.unwrap_or(now),
        }
    }
}

/// Which check held a file back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Younger than `policy.min_release_age`.
    Age,
    /// Uploaded after `policy.exclude_newer`.
    Date,
    /// A deny rule.
    Rule,
    /// No upload time, under `policy.unknown_upload_time = "deny"`.
    UnknownTime,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Age => "age",
            Self::Date => "date",
            Self::Rule => "rule",
            Self::UnknownTime => "unknown-upload-time",
        }
    }
}

/// Why a file is held back, and when it will not be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub check: Check,
    pub message: String,
    /// The rule that decided, as `allow|deny ECOSYSTEM PATTERN [VERSIONS]`.
    pub rule: Option<String>,
    /// Unix seconds; `None`: not by waiting.
    pub eligible_at: Option<u64>,
}

/// A rule's version set, parsed once.
#[derive(Debug, Clone)]
pub enum VersionMatcher {
    Pep440(pep440_rs::VersionSpecifiers),
    /// Alternatives (`or`) of conjunctions (`and`) of hex comparisons.
    Hex(Vec<Vec<(HexOp, semver::Version)>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HexOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    /// `~>`: at least the version, below the next one up at its second-to-last given part.
    Compatible {
        parts: usize,
    },
}

impl VersionMatcher {
    pub fn parse(ecosystem: Ecosystem, text: &str) -> Result<Self, String> {
        match ecosystem {
            Ecosystem::Pypi => pep440_rs::VersionSpecifiers::from_str(text)
                .map(Self::Pep440)
                .map_err(|e| format!("versions {text:?}: not a PEP 440 specifier set: {e}")),
            Ecosystem::Hex => {
                let bad = |why: &str| format!("versions {text:?}: not a hex version requirement ({why})");
                let mut alternatives = Vec::new();
                for alternative in text.split(" or ") {
                    let mut all = Vec::new();
                    for comparison in alternative.split(" and ") {
                        let comparison = comparison.trim();
                        let (op, rest) = [
                            ("~>", HexOp::Compatible { parts: 0 }),
                            ("==", HexOp::Eq),
                            ("!=", HexOp::Ne),
                            (">=", HexOp::Ge),
                            ("<=", HexOp::Le),
                            (">", HexOp::Gt),
                            ("<", HexOp::Lt),
                        ]
                        .into_iter()
                        .find_map(|(prefix, op)| {
                            comparison.strip_prefix(prefix).map(|rest| (op, rest.trim()))
                        })
                        .unwrap_or((HexOp::Eq, comparison));
                        let parts = rest.split(['-', '+']).next().unwrap_or("").split('.').count();
                        let op = match op {
                            HexOp::Compatible { .. } if (2..=3).contains(&parts) => {
                                HexOp::Compatible { parts }
                            }
                            HexOp::Compatible { .. } => {
                                return Err(bad("~> takes MAJOR.MINOR or MAJOR.MINOR.PATCH"));
                            }
                            op => op,
                        };
                        // `~> 2.0` names two parts; the comparison needs all three.
                        let full = if parts == 2 {
                            format!("{rest}.0")
                        } else {
                            rest.to_owned()
                        };
                        let version = semver::Version::parse(&full).map_err(|e| bad(&e.to_string()))?;
                        all.push((op, version));
                    }
                    alternatives.push(all);
                }
                Ok(Self::Hex(alternatives))
            }
        }
    }

    /// Whether `version` is in the set; a version that does not parse is in no set.
    pub fn contains(&self, version: &str) -> bool {
        match self {
            Self::Pep440(specifiers) => {
                pep440_rs::Version::from_str(version).is_ok_and(|v| specifiers.contains(&v))
            }
            Self::Hex(alternatives) => {
                let Ok(v) = semver::Version::parse(version) else {
                    return false;
                };
                alternatives.iter().any(|all| {
                    all.iter().all(|(op, at)| match op {
                        HexOp::Eq => v == *at,
                        HexOp::Ne => v != *at,
                        HexOp::Gt => v > *at,
                        HexOp::Ge => v >= *at,
                        HexOp::Lt => v < *at,
                        HexOp::Le => v <= *at,
                        HexOp::Compatible { parts } => {
                            let below = if *parts == 2 {
                                semver::Version::new(at.major + 1, 0, 0)
                            } else {
                                semver::Version::new(at.major, at.minor + 1, 0)
                            };
                            v >= *at && v < below && (v.pre.is_empty() || !at.pre.is_empty())
                        }
                    })
                })
            }
        }
    }
}

/// An RFC 3339 time (as indexes write upload times) in unix seconds.
pub fn parse_time(text: &str) -> Option<u64> {
    humantime::parse_rfc3339_weak(text.trim())
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// Unix seconds as RFC 3339 (`2026-11-01T00:00:00Z`).
pub fn format_time(at: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(at)).to_string()
}

/// The policy in force.
pub struct Policy {
    config: PolicyConfig,
    matchers: Vec<Option<VersionMatcher>>,
}

impl Policy {
    pub fn new(config: PolicyConfig) -> Self {
        let matchers = config
            .rules
            .iter()
            .map(|rule| {
                // Checked when the rule was made.
                rule.versions
                    .as_deref()
                    .and_then(|v| VersionMatcher::parse(rule.ecosystem, v).ok())
            })
            .collect();
        Self { config, matchers }
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Whether the age or date check applies to anything.
    pub fn checks_time(&self) -> bool {
        !self.config.min_release_age.is_zero() || self.config.exclude_newer.is_some()
    }

    /// Whether the policy can hold anything back.
    pub fn is_active(&self) -> bool {
        self.checks_time() || !self.config.rules.is_empty()
    }

    /// Whether a file's unknown upload time is filled in with the time it was first seen.
    pub fn fills_upload_time(&self) -> bool {
        self.checks_time() && self.config.unknown_upload_time == UnknownUploadTime::FirstSeen
    }

    /// The first rule for the project as a whole (no versions), when it denies it.
    pub fn denied_project(&self, ecosystem: Ecosystem, project: &str) -> Option<&PolicyRule> {
        self.config
            .rules
            .iter()
            .find(|rule| rule.ecosystem == ecosystem && rule.project.matches(project))
            .filter(|rule| rule.versions.is_none() && rule.action == RuleAction::Deny)
    }

    /// Whether a rule (whatever the times say) holds the release back.
    pub fn rule_denies(&self, release: &Release<'_>) -> bool {
        self.rule_for(release)
            .is_some_and(|rule| rule.action == RuleAction::Deny)
    }

    /// The first rule that covers the release.
    fn rule_for(&self, release: &Release<'_>) -> Option<&PolicyRule> {
        self.config
            .rules
            .iter()
            .zip(&self.matchers)
            .find(|(rule, matcher)| {
                rule.ecosystem == release.ecosystem
                    && rule.project.matches(release.project)
                    && match (matcher, release.version) {
                        (None, _) => rule.versions.is_none(),
                        (Some(matcher), Some(version)) => matcher.contains(version),
                        (Some(_), None) => false,
                    }
            })
            .map(|(rule, _)| rule)
    }

    /// The time the age and date checks use: the index's upload time, else (under
    /// `first-seen`) the time the mirror first saw the file.
    pub fn effective_upload_time(&self, release: &Release<'_>) -> Option<u64> {
        match (release.uploaded_at, self.config.unknown_upload_time) {
            (Some(at), _) => Some(at),
            (None, UnknownUploadTime::FirstSeen) => Some(release.first_seen),
            (None, _) => None,
        }
    }

    /// Whether the release may be served at `now`, and if not, why and until when.
    pub fn judge(&self, release: &Release<'_>, now: u64) -> Result<(), Hold> {
        if let Some(rule) = self.rule_for(release) {
            return match rule.action {
                RuleAction::Allow => Ok(()),
                RuleAction::Deny => Err(Hold {
                    check: Check::Rule,
                    message: if rule.reason.is_empty() {
                        format!("held back by the policy rule \"{rule}\"")
                    } else {
                        format!("held back by the policy rule \"{rule}\": {}", rule.reason)
                    },
                    rule: Some(rule.to_string()),
                    eligible_at: None,
                }),
            };
        }
        if !self.checks_time() {
            return Ok(());
        }
        let Some(uploaded) = self.effective_upload_time(release) else {
            return match self.config.unknown_upload_time {
                UnknownUploadTime::Deny => Err(Hold {
                    check: Check::UnknownTime,
                    message: "the index gives no upload time and policy.unknown_upload_time is deny".into(),
                    rule: None,
                    eligible_at: None,
                }),
                _ => Ok(()),
            };
        };
        let seen = if release.uploaded_at.is_some() {
            "uploaded"
        } else {
            "first seen by this mirror"
        };
        if let Some(limit) = self.config.exclude_newer
            && uploaded > limit
        {
            return Err(Hold {
                check: Check::Date,
                message: format!(
                    "{seen} {}, after policy.exclude_newer ({})",
                    format_time(uploaded),
                    format_time(limit)
                ),
                rule: None,
                eligible_at: None,
            });
        }
        let eligible_at = uploaded.saturating_add(self.config.min_release_age.as_secs());
        if now < eligible_at {
            return Err(Hold {
                check: Check::Age,
                message: format!(
                    "{seen} {}, less than policy.min_release_age ({}) ago; eligible at {}",
                    format_time(uploaded),
                    humantime::format_duration(self.config.min_release_age),
                    format_time(eligible_at)
                ),
                rule: None,
                eligible_at: Some(eligible_at),
            });
        }
        Ok(())
    }
}

/// Every check the policy makes of one release, for `/policy/explain`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Explanation {
    /// The index's upload time (RFC 3339), if it gives one.
    pub upload_time: Option<String>,
    /// When this mirror first saw it (RFC 3339).
    pub first_seen: String,
    pub checks: Vec<CheckOutcome>,
    pub served: bool,
    /// Why it is held back.
    pub message: Option<String>,
    pub eligible_at: Option<String>,
}

/// One check and what it found: `allowed`, `held`, `passed`, `not set` or `skipped` (a rule
/// decided first).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckOutcome {
    pub check: &'static str,
    pub outcome: &'static str,
    pub detail: String,
}

impl Policy {
    /// Every check in the order [`Policy::judge`] makes them, and its verdict.
    pub fn explain(&self, release: &Release<'_>, now: u64) -> Explanation {
        let verdict = self.judge(release, now);
        let rule = self.rule_for(release);
        let mut checks = vec![CheckOutcome {
            check: "rule",
            outcome: match rule.map(|r| r.action) {
                Some(RuleAction::Allow) => "allowed",
                Some(RuleAction::Deny) => "held",
                None => "passed",
            },
            detail: rule.map_or_else(|| "no rule matches".to_owned(), PolicyRule::to_line),
        }];
        let uploaded = self.effective_upload_time(release);
        let time_check = |check: &'static str, set: bool, held: bool, detail: String| CheckOutcome {
            check,
            outcome: match (rule.is_some(), set, held) {
                (true, _, _) => "skipped",
                (false, false, _) => "not set",
                (false, true, true) => "held",
                (false, true, false) => "passed",
            },
            detail,
        };
        let limit = self.config.exclude_newer;
        checks.push(time_check(
            "exclude_newer",
            limit.is_some(),
            matches!((uploaded, limit), (Some(at), Some(limit)) if at > limit),
            limit.map_or_else(
                || "policy.exclude_newer is not set".to_owned(),
                |l| format!("files uploaded after {}", format_time(l)),
            ),
        ));
        let age = self.config.min_release_age;
        let eligible = uploaded.map(|at| at.saturating_add(age.as_secs()));
        checks.push(time_check(
            "min_release_age",
            !age.is_zero(),
            eligible.is_some_and(|at| now < at),
            match eligible {
                Some(at) => format!(
                    "{} old enough at {}",
                    humantime::format_duration(age),
                    format_time(at)
                ),
                None => format!(
                    "no upload time (policy.unknown_upload_time = {})",
                    self.config.unknown_upload_time.as_str()
                ),
            },
        ));
        let (message, eligible_at) = match &verdict {
            Ok(()) => (None, None),
            Err(hold) => (Some(hold.message.clone()), hold.eligible_at.map(format_time)),
        };
        Explanation {
            upload_time: release.uploaded_at.map(format_time),
            first_seen: format_time(release.first_seen),
            checks,
            served: verdict.is_ok(),
            message,
            eligible_at,
        }
    }
}

/// The policy in force, replaced whole when its rules or its configuration change.
pub type SharedPolicy = crate::live::Live<Policy>;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::PolicyRule;

    const NOW: u64 = 1_800_000_000;
    const DAY: u64 = 86_400;

    fn rule(line: &str) -> PolicyRule {
        serde_json::from_value(serde_json::Value::String(line.to_owned())).unwrap()
    }

    fn release(version: &str, uploaded_at: Option<u64>) -> Release<'_> {
        Release {
            ecosystem: Ecosystem::Pypi,
            project: "acme-utils",
            version: Some(version),
            uploaded_at,
            first_seen: NOW - DAY,
        }
    }

    fn policy(
        age_days: u64,
        exclude_newer: Option<u64>,
        unknown: UnknownUploadTime,
        rules: &[&str],
    ) -> Policy {
        Policy::new(PolicyConfig {
            min_release_age: Duration::from_secs(age_days * DAY),
            exclude_newer,
            unknown_upload_time: unknown,
            rules: rules.iter().map(|r| rule(r)).collect(),
        })
    }

    #[test]
    fn the_age_check_says_when_a_file_becomes_eligible() {
        let p = policy(3, None, UnknownUploadTime::FirstSeen, &[]);
        assert_eq!(p.judge(&release("1.0", Some(NOW - 4 * DAY)), NOW), Ok(()));
        let hold = p.judge(&release("2.0", Some(NOW - 3600)), NOW).unwrap_err();
        assert_eq!(hold.check, Check::Age);
        assert_eq!(hold.eligible_at, Some(NOW - 3600 + 3 * DAY));
        // No upload time: first seen a day ago stands in.
        let hold = p.judge(&release("2.0", None), NOW).unwrap_err();
        assert_eq!(hold.eligible_at, Some(NOW + 2 * DAY));
        assert!(
            hold.message.starts_with("first seen by this mirror"),
            "{}",
            hold.message
        );
        let allow = policy(3, None, UnknownUploadTime::Allow, &[]);
        assert_eq!(allow.judge(&release("2.0", None), NOW), Ok(()));
        let deny = policy(3, None, UnknownUploadTime::Deny, &[]);
        assert_eq!(
            deny.judge(&release("2.0", None), NOW).unwrap_err().check,
            Check::UnknownTime
        );
    }

    #[test]
    fn rules_decide_first_and_the_date_check_never_expires() {
        let p = policy(
            3,
            Some(NOW - 2 * DAY),
            UnknownUploadTime::FirstSeen,
            &[
                "allow pypi acme-* ==2.0; hotfix",
                "deny pypi acme-utils >=3; broken",
                "deny pypi evil",
            ],
        );
        assert_eq!(p.judge(&release("2.0", Some(NOW - 60)), NOW), Ok(()), "allowed");
        let hold = p.judge(&release("3.1", Some(NOW - 90 * DAY)), NOW).unwrap_err();
        assert_eq!(
            (hold.check, hold.rule.as_deref()),
            (Check::Rule, Some("deny pypi acme-utils >=3"))
        );
        assert!(hold.message.ends_with(": broken"), "{}", hold.message);
        let hold = p.judge(&release("1.9", Some(NOW - DAY)), NOW).unwrap_err();
        assert_eq!((hold.check, hold.eligible_at), (Check::Date, None));
        assert!(p.denied_project(Ecosystem::Pypi, "evil").is_some());
        assert!(
            p.denied_project(Ecosystem::Pypi, "acme-utils").is_none(),
            "a rule with versions"
        );
        assert!(
            p.denied_project(Ecosystem::Hex, "evil").is_none(),
            "another ecosystem"
        );
        assert!(!policy(0, None, UnknownUploadTime::FirstSeen, &[]).is_active());
    }

    #[test]
    fn hex_requirements_match_as_mix_reads_them() {
        let m = |text: &str| VersionMatcher::parse(Ecosystem::Hex, text).unwrap();
        assert!(m("~> 2.0").contains("2.9.1") && !m("~> 2.0").contains("3.0.0"));
        assert!(m("~> 2.1.3").contains("2.1.9") && !m("~> 2.1.3").contains("2.2.0"));
        assert!(
            !m("~> 2.0").contains("2.1.0-rc.1"),
            "no pre-release unless asked for"
        );
        assert!(m(">= 1.0.0 and < 2.0.0").contains("1.5.0"));
        assert!(m("== 1.0.0 or == 3.0.0").contains("3.0.0") && !m("== 1.0.0 or == 3.0.0").contains("2.0.0"));
        assert!(m("1.2.3").contains("1.2.3"));
        assert!(VersionMatcher::parse(Ecosystem::Hex, "~> 2").is_err());
        assert!(
            VersionMatcher::parse(Ecosystem::Pypi, "==2.*")
                .unwrap()
                .contains("2.4")
        );
        assert!(VersionMatcher::parse(Ecosystem::Pypi, "=>2").is_err());
    }
}
