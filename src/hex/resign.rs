//! Registry files the mirror changes (`hex.resign_key`, hosted repositories): the releases the
//! release policy holds back taken out; the caller signs the payload again with its key.
//! Clients that pin the mirror's public key then resolve only releases they may download.

use prost::Message;

use super::proto::{Names, Package, Versions, VersionsPackage};
use super::registry::RegistryFile;

/// One release as the caller is asked about it.
#[derive(Debug, Clone, Copy)]
pub struct ReleaseRef<'a> {
    pub package: &'a str,
    pub version: &'a str,
    /// Unix seconds, when the file says (`/packages/{name}` does; `/versions` does not).
    pub published_at: Option<u64>,
}

/// `payload` (a verified registry file's) with only the packages `keep_package` and the releases
/// `keep` let through, encoded (the caller signs it, see [`super::hosted::signed`]).
pub fn filter_payload(
    which: &RegistryFile,
    payload: &[u8],
    keep_package: &dyn Fn(&str) -> bool,
    keep: &dyn Fn(&ReleaseRef<'_>) -> bool,
) -> Result<Vec<u8>, String> {
    let decode_error = |e: prost::DecodeError| format!("{}: {e}", which.path());
    Ok(match which {
        RegistryFile::Names => {
            let mut names = Names::decode(payload).map_err(decode_error)?;
            names.packages.retain(|p| keep_package(&p.name));
            names.encode_to_vec()
        }
        RegistryFile::Versions => {
            let mut versions = Versions::decode(payload).map_err(decode_error)?;
            versions.packages.retain(|p| keep_package(&p.name));
            for package in &mut versions.packages {
                keep_versions(package, keep);
            }
            versions.encode_to_vec()
        }
        RegistryFile::Package(_) => {
            let mut package = Package::decode(payload).map_err(decode_error)?;
            let name = std::mem::take(&mut package.name);
            package.releases.retain(|r| {
                keep(&ReleaseRef {
                    package: &name,
                    version: &r.version,
                    published_at: r
                        .published_at
                        .as_ref()
                        .and_then(|t| u64::try_from(t.seconds).ok()),
                })
            });
            package.name = name;
            package.encode_to_vec()
        }
    })
}

/// Takes the versions `keep` refuses out of a `/versions` entry; the indexes of retired and
/// advised versions follow their versions.
fn keep_versions(package: &mut VersionsPackage, keep: &dyn Fn(&ReleaseRef<'_>) -> bool) {
    let mut new_index = Vec::with_capacity(package.versions.len());
    let mut kept = Vec::with_capacity(package.versions.len());
    for version in std::mem::take(&mut package.versions) {
        let release = ReleaseRef {
            package: &package.name,
            version: &version,
            published_at: None,
        };
        if keep(&release) {
            new_index.push(i32::try_from(kept.len()).ok());
            kept.push(version);
        } else {
            new_index.push(None);
        }
    }
    package.versions = kept;
    let remap = |indexes: &mut Vec<i32>| {
        *indexes = indexes
            .iter()
            .filter_map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| new_index.get(i).copied().flatten())
            })
            .collect();
    };
    remap(&mut package.retired);
    remap(&mut package.with_advisories);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex::HexSigningKey;
    use crate::hex::RegistryVerifier;
    use crate::hex::key::HexPublicKey;
    use crate::hex::test_support::{OTHER_KEY, OTHER_KEY_PUB};

    #[test]
    fn held_versions_leave_with_their_indexes_and_the_file_verifies_with_the_mirrors_key() {
        let key = HexSigningKey::from_pem(OTHER_KEY).unwrap();
        assert_eq!(key.public_pem().trim(), OTHER_KEY_PUB.trim());
        let versions = Versions {
            packages: vec![
                VersionsPackage {
                    name: "foo".into(),
                    versions: vec!["1.0.0".into(), "1.1.0".into(), "2.0.0".into()],
                    retired: vec![0, 2],
                    with_advisories: vec![2],
                },
                VersionsPackage {
                    name: "evil".into(),
                    versions: vec!["0.1.0".into()],
                    retired: vec![],
                    with_advisories: vec![],
                },
            ],
            repository: "hexpm".into(),
        };
        let payload = filter_payload(
            &RegistryFile::Versions,
            &versions.encode_to_vec(),
            &|name| name != "evil",
            &|r| r.version != "1.1.0",
        )
        .unwrap();
        let gz = crate::hex::hosted::signed(payload, &key).unwrap();
        let verifier = RegistryVerifier::new(HexPublicKey::from_pem(OTHER_KEY_PUB).unwrap());
        let served = verifier.versions(&gz).unwrap();
        assert_eq!(served.packages.len(), 1);
        let foo = &served.packages[0];
        assert_eq!(foo.versions, ["1.0.0", "2.0.0"]);
        assert_eq!(
            (foo.retired.as_slice(), foo.with_advisories.as_slice()),
            (&[0, 1][..], &[1][..])
        );
    }
}
