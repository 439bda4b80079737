//! A hosted hex repository's packages as pkgmirror keeps them (one record per package), and the
//! registry files built from them: `/names`, `/versions` and `/packages/{name}`, signed with the
//! repository's key. Pure: the record store and the routes are the caller's.

use serde::{Deserialize, Serialize};

use super::key::HexSigningKey;
use super::proto::{
    Dependency, Names, NamesPackage, Package, Release, RetirementReason, RetirementStatus, Timestamp,
    Versions, VersionsPackage,
};
use super::publish::Publication;
use super::registry::RegistryFile;

/// One hosted package: every release published to it, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedHexPackage {
    pub name: String,
    pub releases: Vec<HostedHexRelease>,
}

/// A published release: what the registry lists, and who published it when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedHexRelease {
    pub version: String,
    /// Lower-case hex sha256 of the whole tarball (the blob's key).
    pub outer_checksum: String,
    /// Lower-case hex of the tarball's `CHECKSUM`.
    pub inner_checksum: String,
    pub dependencies: Vec<HostedDependency>,
    pub build_tools: Vec<String>,
    pub size: u64,
    /// Unix seconds.
    pub published_at: u64,
    /// The token name that published it.
    pub publisher: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<HostedRetirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedDependency {
    pub package: String,
    pub requirement: String,
    pub optional: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedRetirement {
    /// `other`, `invalid`, `security`, `deprecated` or `renamed`.
    pub reason: String,
    pub message: String,
}

/// What [`HostedHexPackage::publish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    Added,
    /// The same bytes were published before: nothing changes.
    Again,
}

impl HostedHexPackage {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            releases: Vec::new(),
        }
    }

    /// Adds a release. A version already published is immutable: the same bytes again are
    /// accepted as they are, other bytes refused.
    pub fn publish(
        &mut self,
        publication: &Publication,
        size: u64,
        publisher: &str,
        now: u64,
    ) -> Result<Published, String> {
        let outer = ::hex::encode(publication.outer_checksum);
        if let Some(existing) = self.releases.iter().find(|r| r.version == publication.version) {
            return if existing.outer_checksum == outer {
                Ok(Published::Again)
            } else {
                Err(format!(
                    "{} {} is already published with other bytes (sha256 {}); a version is immutable: publish a new one",
                    self.name, publication.version, existing.outer_checksum
                ))
            };
        }
        self.releases.push(HostedHexRelease {
            version: publication.version.clone(),
            outer_checksum: outer,
            inner_checksum: ::hex::encode(publication.inner_checksum),
            dependencies: publication
                .dependencies
                .iter()
                .map(|d| HostedDependency {
                    package: d.package.clone(),
                    requirement: d.requirement.clone(),
                    optional: d.optional.unwrap_or(false),
                    app: d.app.clone(),
                    repository: d.repository.clone(),
                })
                .collect(),
            build_tools: publication.build_tools.clone(),
            size,
            published_at: now,
            publisher: publisher.to_owned(),
            retired: None,
        });
        Ok(Published::Added)
    }

    /// The release's `version`, if published.
    pub fn release(&self, version: &str) -> Option<&HostedHexRelease> {
        self.releases.iter().find(|r| r.version == version)
    }

    /// Retires a release (`Some`) or takes its retirement back (`None`).
    pub fn retire(&mut self, version: &str, retirement: Option<HostedRetirement>) -> Result<(), String> {
        if let Some(r) = &retirement
            && parse_reason(&r.reason).is_none()
        {
            return Err(format!(
                "the reason {:?} is not one of other, invalid, security, deprecated, renamed",
                r.reason
            ));
        }
        let name = self.name.clone();
        let release = self
            .releases
            .iter_mut()
            .find(|r| r.version == version)
            .ok_or_else(|| format!("{name} has no release {version}"))?;
        release.retired = retirement;
        Ok(())
    }

    /// `/packages/{name}` of the repository `repository`, unsigned. A dependency on the
    /// repository `alias` (the upstream a fallback repository serves too), or naming this one, is
    /// listed as one on this repository, so clients that know only this one resolve it.
    pub fn package(&self, repository: &str, alias: Option<&str>) -> Package {
        Package {
            releases: self
                .releases
                .iter()
                .map(|release| release_message(release, repository, alias))
                .collect(),
            name: self.name.clone(),
            repository: repository.to_owned(),
            advisories: Vec::new(),
        }
    }

    /// Its entry of `/versions`.
    pub fn versions_entry(&self) -> VersionsPackage {
        VersionsPackage {
            name: self.name.clone(),
            versions: self.releases.iter().map(|r| r.version.clone()).collect(),
            retired: self
                .releases
                .iter()
                .enumerate()
                .filter(|(_, r)| r.retired.is_some())
                .filter_map(|(i, _)| i32::try_from(i).ok())
                .collect(),
            with_advisories: Vec::new(),
        }
    }

    /// Its entry of `/names`: updated when its newest release was published.
    pub fn names_entry(&self) -> NamesPackage {
        NamesPackage {
            name: self.name.clone(),
            updated_at: self.releases.iter().map(|r| r.published_at).max().map(timestamp),
        }
    }
}

fn timestamp(seconds: u64) -> Timestamp {
    Timestamp {
        seconds: i64::try_from(seconds).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

fn parse_reason(reason: &str) -> Option<RetirementReason> {
    [
        RetirementReason::Other,
        RetirementReason::Invalid,
        RetirementReason::Security,
        RetirementReason::Deprecated,
        RetirementReason::Renamed,
    ]
    .into_iter()
    .find(|r| r.as_str() == reason)
}

fn release_message(release: &HostedHexRelease, repository: &str, alias: Option<&str>) -> Release {
    let checksum = |hex: &str| ::hex::decode(hex).unwrap_or_default();
    Release {
        version: release.version.clone(),
        inner_checksum: checksum(&release.inner_checksum),
        dependencies: release
            .dependencies
            .iter()
            .map(|d| Dependency {
                package: d.package.clone(),
                requirement: d.requirement.clone(),
                optional: Some(d.optional),
                app: d.app.clone(),
                repository: d
                    .repository
                    .clone()
                    .filter(|r| Some(r.as_str()) != alias && r != repository),
            })
            .collect(),
        retired: release.retired.as_ref().map(|r| RetirementStatus {
            reason: parse_reason(&r.reason).unwrap_or(RetirementReason::Other) as i32,
            message: (!r.message.is_empty()).then(|| r.message.clone()),
        }),
        outer_checksum: Some(checksum(&release.outer_checksum)),
        advisory_indexes: Vec::new(),
        published_at: Some(timestamp(release.published_at)),
    }
}

/// `/names` of `repository`, listing `packages` sorted by name.
pub fn names(repository: &str, mut packages: Vec<NamesPackage>) -> Names {
    packages.sort_by(|a, b| a.name.cmp(&b.name));
    Names {
        packages,
        repository: repository.to_owned(),
    }
}

/// `/versions` of `repository`, listing `packages` sorted by name.
pub fn versions(repository: &str, mut packages: Vec<VersionsPackage>) -> Versions {
    packages.sort_by(|a, b| a.name.cmp(&b.name));
    Versions {
        packages,
        repository: repository.to_owned(),
    }
}

/// The payload of a hosted repository's registry file `which`. `hosted` holds the repository's
/// packages (for `/packages/{name}`, the one named, if hosted). `upstream` is the upstream's
/// verified payload of the same file when the repository falls back to it (`alias` is then the
/// upstream repository's name): its packages are listed under this repository's name, except
/// the names the repository hosts, which never mix in upstream releases.
pub fn repository_payload(
    repository: &str,
    which: &RegistryFile,
    hosted: &[HostedHexPackage],
    upstream: Option<&[u8]>,
    alias: Option<&str>,
) -> Result<Vec<u8>, String> {
    use prost::Message as _;
    let decode_error = |e: prost::DecodeError| format!("the upstream's {}: {e}", which.path());
    // The upstream's entries of the names not hosted, then the hosted packages' entries.
    fn merged<T>(
        upstream: Vec<T>,
        name: fn(&T) -> &str,
        hosted: &[HostedHexPackage],
        entry: fn(&HostedHexPackage) -> T,
    ) -> Vec<T> {
        upstream
            .into_iter()
            .filter(|p| !hosted.iter().any(|h| h.name == name(p)))
            .chain(hosted.iter().map(entry))
            .collect()
    }
    Ok(match which {
        RegistryFile::Names => {
            let upstream = upstream
                .map(Names::decode)
                .transpose()
                .map_err(decode_error)?
                .map_or_else(Vec::new, |n| n.packages);
            let packages = merged(upstream, |p| &p.name, hosted, HostedHexPackage::names_entry);
            names(repository, packages).encode_to_vec()
        }
        RegistryFile::Versions => {
            let upstream = upstream
                .map(Versions::decode)
                .transpose()
                .map_err(decode_error)?
                .map_or_else(Vec::new, |v| v.packages);
            let packages = merged(upstream, |p| &p.name, hosted, HostedHexPackage::versions_entry);
            versions(repository, packages).encode_to_vec()
        }
        RegistryFile::Package(name) => match (hosted.iter().find(|p| &p.name == name), upstream) {
            (Some(package), _) => package.package(repository, alias).encode_to_vec(),
            (None, Some(payload)) => {
                let mut package = Package::decode(payload).map_err(decode_error)?;
                package.repository = repository.to_owned();
                package.encode_to_vec()
            }
            (None, None) => return Err(format!("{repository} has no package {name}")),
        },
    })
}

/// A registry file: `payload` (an encoded message) signed with `key`, gzipped as hex.pm does.
pub fn signed(payload: Vec<u8>, key: &HexSigningKey) -> Result<Vec<u8>, String> {
    use prost::Message as _;
    use std::io::Write as _;
    let signature = key.sign(&payload);
    let signed = super::proto::Signed {
        payload,
        signature: Some(signature),
    }
    .encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(signed.len() / 2),
        flate2::Compression::default(),
    );
    gz.write_all(&signed)
        .and_then(|()| gz.finish())
        .map_err(|e| format!("gzip: {e}"))
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::hex::RegistryVerifier;
    use crate::hex::key::HexPublicKey;
    use crate::hex::test_support::{OTHER_KEY, OTHER_KEY_PUB};

    fn publication(version: &str, outer: u8) -> Publication {
        Publication {
            name: "teamlib".into(),
            version: version.into(),
            outer_checksum: [outer; 32],
            inner_checksum: [7; 32],
            dependencies: vec![Dependency {
                package: "fixfoo".into(),
                requirement: "~> 1.0".into(),
                optional: Some(false),
                app: None,
                repository: None,
            }],
            build_tools: vec!["rebar3".into()],
        }
    }

    #[test]
    fn a_version_is_published_once_and_the_same_bytes_again_are_no_change() {
        let mut package = HostedHexPackage::new("teamlib");
        assert_eq!(
            package.publish(&publication("0.1.0", 1), 10, "ci", 100),
            Ok(Published::Added)
        );
        assert_eq!(
            package.publish(&publication("0.1.0", 1), 10, "ci", 200),
            Ok(Published::Again)
        );
        let err = package
            .publish(&publication("0.1.0", 2), 10, "ci", 300)
            .unwrap_err();
        assert!(err.contains("already published with other bytes"), "{err}");
        assert_eq!(
            package.publish(&publication("0.2.0", 2), 12, "dev", 400),
            Ok(Published::Added)
        );
        assert_eq!(package.releases.len(), 2);
        assert_eq!(package.release("0.1.0").unwrap().published_at, 100);
    }

    #[test]
    fn registry_files_verify_with_the_repositorys_key_and_name() {
        let key = HexSigningKey::from_pem(OTHER_KEY).unwrap();
        let verifier =
            RegistryVerifier::new(HexPublicKey::from_pem(OTHER_KEY_PUB).unwrap()).with_repository("team");
        let mut package = HostedHexPackage::new("teamlib");
        package.publish(&publication("0.1.0", 1), 10, "ci", 100).unwrap();
        package.publish(&publication("0.2.0", 2), 12, "ci", 200).unwrap();
        package
            .retire(
                "0.1.0",
                Some(HostedRetirement {
                    reason: "security".into(),
                    message: "CVE".into(),
                }),
            )
            .unwrap();
        assert!(package.retire("9.9.9", None).is_err());
        assert!(
            package
                .retire(
                    "0.2.0",
                    Some(HostedRetirement {
                        reason: "bored".into(),
                        message: String::new()
                    })
                )
                .is_err()
        );

        let gz = signed(package.package("team", None).encode_to_vec(), &key).unwrap();
        let read = verifier.package("teamlib", &gz).unwrap();
        assert_eq!(read.releases.len(), 2);
        assert_eq!(
            read.releases[0].retired.as_ref().map(|r| r.reason),
            Some(RetirementReason::Security as i32)
        );
        assert_eq!(read.releases[1].outer_checksum, Some(vec![2; 32]));
        assert_eq!(read.releases[1].dependencies[0].package, "fixfoo");
        assert_eq!(
            read.releases[1].published_at.as_ref().map(|t| t.seconds),
            Some(200)
        );

        let gz = signed(
            versions("team", vec![package.versions_entry()]).encode_to_vec(),
            &key,
        )
        .unwrap();
        let read = verifier.versions(&gz).unwrap();
        assert_eq!(read.packages[0].versions, ["0.1.0", "0.2.0"]);
        assert_eq!(read.packages[0].retired, [0]);
        let gz = signed(names("team", vec![package.names_entry()]).encode_to_vec(), &key).unwrap();
        let read = verifier.names(&gz).unwrap();
        assert_eq!(read.packages[0].updated_at.as_ref().map(|t| t.seconds), Some(200));
        // Another repository's name is refused by clients.
        assert!(
            RegistryVerifier::new(HexPublicKey::from_pem(OTHER_KEY_PUB).unwrap())
                .names(&gz)
                .is_err()
        );
    }

    #[test]
    fn a_fallback_repository_lists_upstream_names_as_its_own_but_never_mixes_a_hosted_name() {
        let mut hosted = HostedHexPackage::new("teamlib");
        let mut with_upstream_dep = publication("0.1.0", 1);
        with_upstream_dep.dependencies[0].repository = Some("hexpm".into());
        hosted.publish(&with_upstream_dep, 10, "ci", 100).unwrap();
        let hosted = [hosted];
        let upstream_package = |name: &str, version: &str| Package {
            name: name.into(),
            repository: "hexpm".into(),
            releases: vec![Release {
                version: version.into(),
                inner_checksum: vec![1; 32],
                outer_checksum: Some(vec![2; 32]),
                ..Release::default()
            }],
            advisories: Vec::new(),
        };
        let names_of = |payload: Vec<u8>| {
            let names = Names::decode(payload.as_slice()).unwrap();
            assert_eq!(names.repository, "team");
            names.packages.into_iter().map(|p| p.name).collect::<Vec<_>>()
        };
        let upstream_names = Names {
            packages: ["fixfoo", "teamlib"]
                .map(|name| NamesPackage {
                    name: name.into(),
                    updated_at: None,
                })
                .into(),
            repository: "hexpm".into(),
        }
        .encode_to_vec();
        let merged = repository_payload(
            "team",
            &RegistryFile::Names,
            &hosted,
            Some(&upstream_names),
            Some("hexpm"),
        );
        assert_eq!(names_of(merged.unwrap()), ["fixfoo", "teamlib"]);
        let alone = repository_payload("team", &RegistryFile::Names, &hosted, None, None);
        assert_eq!(names_of(alone.unwrap()), ["teamlib"]);

        let upstream_versions = Versions {
            packages: vec![VersionsPackage {
                name: "teamlib".into(),
                versions: vec!["9.0.0".into()],
                retired: vec![],
                with_advisories: vec![],
            }],
            repository: "hexpm".into(),
        }
        .encode_to_vec();
        let versions = repository_payload(
            "team",
            &RegistryFile::Versions,
            &hosted,
            Some(&upstream_versions),
            Some("hexpm"),
        )
        .unwrap();
        let versions = Versions::decode(versions.as_slice()).unwrap();
        assert_eq!(versions.packages.len(), 1);
        assert_eq!(versions.packages[0].versions, ["0.1.0"]);

        // The upstream publishing the hosted name changes nothing.
        let teamlib = RegistryFile::Package("teamlib".into());
        let upstream = upstream_package("teamlib", "9.0.0").encode_to_vec();
        let package = repository_payload("team", &teamlib, &hosted, Some(&upstream), Some("hexpm")).unwrap();
        let package = Package::decode(package.as_slice()).unwrap();
        assert_eq!(package.repository, "team");
        assert_eq!(package.releases.len(), 1);
        assert_eq!(package.releases[0].version, "0.1.0");
        assert_eq!(package.releases[0].dependencies[0].repository, None);
        let without_fallback = repository_payload("team", &teamlib, &hosted, None, None).unwrap();
        let without_fallback = Package::decode(without_fallback.as_slice()).unwrap();
        assert_eq!(
            without_fallback.releases[0].dependencies[0].repository.as_deref(),
            Some("hexpm")
        );

        let fixfoo = RegistryFile::Package("fixfoo".into());
        let upstream = upstream_package("fixfoo", "1.1.0").encode_to_vec();
        let package = repository_payload("team", &fixfoo, &hosted, Some(&upstream), Some("hexpm")).unwrap();
        let package = Package::decode(package.as_slice()).unwrap();
        assert_eq!(
            (package.name.as_str(), package.repository.as_str()),
            ("fixfoo", "team")
        );
        assert!(repository_payload("team", &fixfoo, &hosted, None, None).is_err());
    }
}
