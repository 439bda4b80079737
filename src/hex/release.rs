//! A verified package's releases as plain data for the catalogue: checksums as lower-case hex,
//! retirement, publication time, dependencies.

use serde::{Deserialize, Serialize};

use super::proto::{Dependency, Package, Release, RetirementReason};

/// One release, as the catalogue stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    pub version: String,
    /// sha256 of the whole tarball (lower-case hex): what a downloaded `.tar` must hash to.
    /// `None` only in very old registry files.
    pub outer_checksum: Option<String>,
    /// The tarball's `CHECKSUM` (lower-case hex here; upper-case inside the tarball).
    pub inner_checksum: String,
    pub retired: Option<Retirement>,
    /// Unix seconds; `None` when the registry file does not say.
    pub published_at: Option<i64>,
    pub dependencies: Vec<DependencyInfo>,
}

/// Why a release was retired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retirement {
    pub reason: RetirementReason,
    pub message: Option<String>,
}

/// A dependency of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DependencyInfo {
    pub package: String,
    /// An Elixir version requirement (`~> 1.0`).
    pub requirement: String,
    pub optional: bool,
    /// The OTP application name: the package name unless the registry names another.
    pub app: String,
    /// The dependency's repository when it is not the package's own.
    pub repository: Option<String>,
}

impl Serialize for RetirementReason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RetirementReason {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let word = String::deserialize(deserializer)?;
        Ok(match word.as_str() {
            "invalid" => Self::Invalid,
            "security" => Self::Security,
            "deprecated" => Self::Deprecated,
            "renamed" => Self::Renamed,
            _ => Self::Other,
        })
    }
}

impl From<&Dependency> for DependencyInfo {
    fn from(dep: &Dependency) -> Self {
        Self {
            package: dep.package.clone(),
            requirement: dep.requirement.clone(),
            optional: dep.optional.unwrap_or(false),
            app: dep.app.clone().unwrap_or_else(|| dep.package.clone()),
            repository: dep.repository.clone(),
        }
    }
}

impl From<&Release> for ReleaseInfo {
    fn from(release: &Release) -> Self {
        Self {
            version: release.version.clone(),
            outer_checksum: release.outer_checksum.as_deref().map(::hex::encode),
            inner_checksum: ::hex::encode(&release.inner_checksum),
            retired: release.retired.as_ref().map(|status| Retirement {
                reason: status.reason(),
                message: status.message.clone(),
            }),
            published_at: release.published_at.map(|t| t.seconds),
            dependencies: release.dependencies.iter().map(DependencyInfo::from).collect(),
        }
    }
}

impl Package {
    /// Every release as plain data, in the registry's order.
    pub fn release_infos(&self) -> Vec<ReleaseInfo> {
        self.releases.iter().map(ReleaseInfo::from).collect()
    }

    /// The release `version`, if the package has it.
    pub fn release(&self, version: &str) -> Option<&Release> {
        self.releases.iter().find(|r| r.version == version)
    }

    /// The outer checksum (lower-case hex) a tarball of `version` must hash to; `None` when the
    /// package has no such release or the registry gives no outer checksum for it.
    pub fn outer_checksum(&self, version: &str) -> Option<String> {
        self.release(version)?
            .outer_checksum
            .as_deref()
            .map(::hex::encode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex::proto::{RetirementStatus, Timestamp};

    fn package() -> Package {
        Package {
            releases: vec![
                Release {
                    version: "0.1.0".into(),
                    inner_checksum: vec![0xab; 32],
                    dependencies: vec![Dependency {
                        package: "fixfoo".into(),
                        requirement: "~> 1.0".into(),
                        optional: Some(true),
                        app: Some("fix_foo".into()),
                        repository: None,
                    }],
                    retired: Some(RetirementStatus {
                        reason: RetirementReason::Security as i32,
                        message: Some("CVE-0".into()),
                    }),
                    outer_checksum: Some(vec![0xCD; 32]),
                    advisory_indexes: vec![],
                    published_at: Some(Timestamp {
                        seconds: 1_700_000_000,
                        nanos: 5,
                    }),
                },
                Release {
                    version: "1.0.0-rc.1+build.5".into(),
                    inner_checksum: vec![0x01; 32],
                    dependencies: vec![Dependency {
                        package: "fixfoo".into(),
                        requirement: ">= 0.0.0".into(),
                        optional: None,
                        app: None,
                        repository: Some("acme".into()),
                    }],
                    retired: None,
                    outer_checksum: None,
                    advisory_indexes: vec![],
                    published_at: None,
                },
            ],
            name: "fixbar".into(),
            repository: "hexpm".into(),
            advisories: vec![],
        }
    }

    #[test]
    fn releases_as_plain_data() {
        let infos = package().release_infos();
        assert_eq!(
            infos[0],
            ReleaseInfo {
                version: "0.1.0".into(),
                outer_checksum: Some("cd".repeat(32)),
                inner_checksum: "ab".repeat(32),
                retired: Some(Retirement {
                    reason: RetirementReason::Security,
                    message: Some("CVE-0".into()),
                }),
                published_at: Some(1_700_000_000),
                dependencies: vec![DependencyInfo {
                    package: "fixfoo".into(),
                    requirement: "~> 1.0".into(),
                    optional: true,
                    app: "fix_foo".into(),
                    repository: None,
                }],
            }
        );
        assert_eq!(infos[1].outer_checksum, None);
        assert_eq!(infos[1].retired, None);
        assert_eq!(infos[1].published_at, None);
        assert_eq!(infos[1].dependencies[0].app, "fixfoo");
        assert!(!infos[1].dependencies[0].optional);
        assert_eq!(infos[1].dependencies[0].repository.as_deref(), Some("acme"));
    }

    #[test]
    fn outer_checksum_lookup_by_version() {
        let package = package();
        assert_eq!(package.outer_checksum("0.1.0"), Some("cd".repeat(32)));
        assert_eq!(package.outer_checksum("1.0.0-rc.1+build.5"), None);
        assert_eq!(package.outer_checksum("9.9.9"), None);
        assert_eq!(
            package.release("1.0.0-rc.1+build.5").unwrap().version,
            "1.0.0-rc.1+build.5"
        );
    }

    #[test]
    fn plain_data_round_trips_through_json() {
        let infos = package().release_infos();
        let json = serde_json::to_string(&infos).unwrap();
        assert!(json.contains("\"reason\":\"security\""), "{json}");
        let back: Vec<ReleaseInfo> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, infos);
    }
}
