//! Verifying a registry file (`/names`, `/versions`, `/packages/{name}`) as fetched: gunzip with a
//! cap, decode `Signed`, check the signature with the pinned key, decode the payload, check origin.
//!
//! The mirror serves registry files byte for byte (clients check hex.pm's signature themselves), so
//! this is the gate before caching: a file that fails any step is not stored, and the client is
//! told why (502). The checks are hex_core's (`hex_registry:unpack_*`), in its order.

use std::fmt;
use std::io::{self, Read};

use flate2::read::GzDecoder;
use prost::Message;
use thiserror::Error;

use super::key::HexPublicKey;
use super::proto::{Names, Package, Signed, Versions};

/// The name of hex.pm's repository, which its registry files carry.
pub const HEXPM_REPOSITORY: &str = "hexpm";

/// The most a registry file may gunzip to. hex.pm's largest (`/versions`) is a few MiB; the cap
/// keeps a hostile or broken upstream from exhausting memory with a small gzip bomb.
pub const DEFAULT_MAX_DECOMPRESSED: usize = 64 * 1024 * 1024;

/// The length of a sha256 in bytes: what both release checksums must be.
const SHA256_LEN: usize = 32;

/// Which registry file is being checked: decides the payload's kind and the origin checks, and
/// names the file in error messages.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegistryFile {
    Names,
    Versions,
    Package(String),
}

impl RegistryFile {
    /// The file's path under the repository root (`/names`, `/packages/{name}`).
    pub fn path(&self) -> String {
        match self {
            Self::Names => "/names".to_owned(),
            Self::Versions => "/versions".to_owned(),
            Self::Package(name) => format!("/packages/{name}"),
        }
    }

    /// The payload message's name, for messages.
    fn kind(&self) -> &'static str {
        match self {
            Self::Names => "Names",
            Self::Versions => "Versions",
            Self::Package(_) => "Package",
        }
    }
}

impl fmt::Display for RegistryFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Names => f.write_str("the registry file /names"),
            Self::Versions => f.write_str("the registry file /versions"),
            Self::Package(name) => write!(f, "the registry file for '{name}'"),
        }
    }
}

/// Why a registry file was refused. Each says which file and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegistryError {
    #[error("{file} is not valid gzip: {reason}")]
    NotGzip { file: RegistryFile, reason: String },
    #[error("{file} is truncated: its gzip stream ends early (an interrupted download?)")]
    Truncated { file: RegistryFile },
    #[error("{file} decompresses to more than {limit} bytes, more than any registry file should")]
    TooLarge { file: RegistryFile, limit: usize },
    #[error("{file} is not a signed registry message: {reason}")]
    NotSigned { file: RegistryFile, reason: String },
    #[error("{file} carries no signature")]
    Unsigned { file: RegistryFile },
    #[error("{file} is signed by another key than the configured hex public key (hex.public_key)")]
    BadSignature { file: RegistryFile },
    #[error("{file} is signed, but its payload is not a {expected} message: {reason}")]
    BadPayload {
        file: RegistryFile,
        expected: &'static str,
        reason: String,
    },
    #[error("{file} names the repository '{found}' where '{expected}' was expected")]
    WrongRepository {
        file: RegistryFile,
        found: String,
        expected: String,
    },
    #[error("{file} describes the package '{found}' where '{expected}' was requested")]
    WrongPackage {
        file: RegistryFile,
        found: String,
        expected: String,
    },
    #[error(
        "{file} gives release {version} an {field} of {len} bytes where a sha256 has 32, so its tarball cannot be checked"
    )]
    BadChecksum {
        file: RegistryFile,
        version: String,
        field: &'static str,
        len: usize,
    },
}

/// A verified payload, of the kind the [`RegistryFile`] asked for.
#[derive(Clone, Debug, PartialEq)]
pub enum Verified {
    Names(Names),
    Versions(Versions),
    Package(Package),
}

/// Checks registry files against one repository: its key, its name, and a size cap.
#[derive(Clone, Debug)]
pub struct RegistryVerifier {
    key: HexPublicKey,
    repository: String,
    max_decompressed: usize,
}

impl RegistryVerifier {
    /// A verifier for hex.pm's repository (`hexpm`) with `key`.
    pub fn new(key: HexPublicKey) -> Self {
        Self {
            key,
            repository: HEXPM_REPOSITORY.to_owned(),
            max_decompressed: DEFAULT_MAX_DECOMPRESSED,
        }
    }

    /// Expects the files to name `repository` instead of `hexpm`.
    pub fn with_repository(mut self, repository: impl Into<String>) -> Self {
        self.repository = repository.into();
        self
    }

    /// Refuses files that gunzip to more than `limit` bytes.
    pub fn with_max_decompressed(mut self, limit: usize) -> Self {
        self.max_decompressed = limit;
        self
    }

    /// The repository name the files must carry.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// Verifies `/names` as fetched (gzip bytes).
    pub fn names(&self, gz: &[u8]) -> Result<Names, RegistryError> {
        let file = RegistryFile::Names;
        let names: Names = self.decode(&file, gz)?;
        self.check_repository(&file, &names.repository)?;
        Ok(names)
    }

    /// Verifies `/versions` as fetched (gzip bytes).
    pub fn versions(&self, gz: &[u8]) -> Result<Versions, RegistryError> {
        let file = RegistryFile::Versions;
        let versions: Versions = self.decode(&file, gz)?;
        self.check_repository(&file, &versions.repository)?;
        Ok(versions)
    }

    /// Verifies `/packages/{name}` as fetched (gzip bytes): also that it describes `name`, and
    /// that every release's checksums are sha256-sized, so the tarballs can be checked later.
    pub fn package(&self, name: &str, gz: &[u8]) -> Result<Package, RegistryError> {
        let file = RegistryFile::Package(name.to_owned());
        let package: Package = self.decode(&file, gz)?;
        self.check_repository(&file, &package.repository)?;
        if package.name != name {
            return Err(RegistryError::WrongPackage {
                file,
                found: package.name,
                expected: name.to_owned(),
            });
        }
        for release in &package.releases {
            let checksums = [
                ("inner checksum", Some(&release.inner_checksum)),
                ("outer checksum", release.outer_checksum.as_ref()),
            ];
            for (field, checksum) in checksums {
                if let Some(checksum) = checksum.filter(|c| c.len() != SHA256_LEN) {
                    return Err(RegistryError::BadChecksum {
                        file,
                        version: release.version.clone(),
                        field,
                        len: checksum.len(),
                    });
                }
            }
        }
        Ok(package)
    }

    /// Verifies any registry file, as `which` says.
    pub fn verify(&self, which: &RegistryFile, gz: &[u8]) -> Result<Verified, RegistryError> {
        match which {
            RegistryFile::Names => self.names(gz).map(Verified::Names),
            RegistryFile::Versions => self.versions(gz).map(Verified::Versions),
            RegistryFile::Package(name) => self.package(name, gz).map(Verified::Package),
        }
    }

    /// The signed payload of `gz`: gunzipped, decoded as `Signed`, its signature checked. The
    /// payload is not decoded, nor its origin checked.
    pub fn payload(&self, which: &RegistryFile, gz: &[u8]) -> Result<Vec<u8>, RegistryError> {
        let signed = gunzip_capped(gz, self.max_decompressed).map_err(|e| match e {
            GunzipError::NotGzip(reason) => RegistryError::NotGzip {
                file: which.clone(),
                reason,
            },
            GunzipError::Truncated => RegistryError::Truncated { file: which.clone() },
            GunzipError::TooLarge { limit } => RegistryError::TooLarge {
                file: which.clone(),
                limit,
            },
        })?;
        let signed = Signed::decode(signed.as_slice()).map_err(|e| RegistryError::NotSigned {
            file: which.clone(),
            reason: e.to_string(),
        })?;
        let signature = match signed.signature {
            Some(signature) if !signature.is_empty() => signature,
            _ => {
                return Err(RegistryError::Unsigned { file: which.clone() });
            }
        };
        if !self.key.verifies(&signed.payload, &signature) {
            return Err(RegistryError::BadSignature { file: which.clone() });
        }
        Ok(signed.payload)
    }

    fn decode<M: Message + Default>(&self, file: &RegistryFile, gz: &[u8]) -> Result<M, RegistryError> {
        let payload = self.payload(file, gz)?;
        M::decode(payload.as_slice()).map_err(|e| RegistryError::BadPayload {
            file: file.clone(),
            expected: file.kind(),
            reason: e.to_string(),
        })
    }

    fn check_repository(&self, file: &RegistryFile, found: &str) -> Result<(), RegistryError> {
        if found == self.repository {
            Ok(())
        } else {
            Err(RegistryError::WrongRepository {
                file: file.clone(),
                found: found.to_owned(),
                expected: self.repository.clone(),
            })
        }
    }
}

/// Why [`gunzip_capped`] failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GunzipError {
    #[error("not valid gzip: {0}")]
    NotGzip(String),
    #[error("the gzip stream ends early")]
    Truncated,
    #[error("decompresses to more than {limit} bytes")]
    TooLarge { limit: usize },
}

/// Gunzips one gzip member held in memory, refusing output past `limit` bytes. A truncated
/// stream or a bad CRC is an error, never a short result.
pub fn gunzip_capped(gz: &[u8], limit: usize) -> Result<Vec<u8>, GunzipError> {
    if gz.is_empty() {
        return Err(GunzipError::NotGzip("the body is empty".to_owned()));
    }
    if !gz.starts_with(&[0x1f, 0x8b]) {
        return Err(GunzipError::NotGzip(
            "it does not start with the gzip magic bytes (1f 8b)".to_owned(),
        ));
    }
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    match GzDecoder::new(gz).take(cap).read_to_end(&mut out) {
        Ok(_) if out.len() > limit => Err(GunzipError::TooLarge { limit }),
        Ok(_) => Ok(out),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(GunzipError::Truncated),
        Err(e) => Err(GunzipError::NotGzip(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex::proto::{Dependency, NamesPackage, Release, VersionsPackage};
    use crate::hex::test_support::{
        OTHER_KEY_PUB, TEST_KEY_PUB, TEST_KEY_RSA_PUB, gzip, registry_file, sign_with,
    };

    fn verifier() -> RegistryVerifier {
        RegistryVerifier::new(HexPublicKey::from_pem(TEST_KEY_PUB).unwrap())
    }

    fn names() -> Names {
        Names {
            packages: vec![
                NamesPackage {
                    name: "fixbar".into(),
                    updated_at: None,
                },
                NamesPackage {
                    name: "fixfoo".into(),
                    updated_at: None,
                },
            ],
            repository: "hexpm".into(),
        }
    }

    fn versions() -> Versions {
        Versions {
            packages: vec![VersionsPackage {
                name: "fixbar".into(),
                versions: vec!["0.1.0".into(), "0.2.0".into()],
                retired: vec![0],
                with_advisories: vec![],
            }],
            repository: "hexpm".into(),
        }
    }

    fn package(name: &str) -> Package {
        Package {
            releases: vec![Release {
                version: "0.1.0".into(),
                inner_checksum: vec![1; 32],
                dependencies: vec![Dependency {
                    package: "fixfoo".into(),
                    requirement: "~> 1.0".into(),
                    optional: None,
                    app: None,
                    repository: None,
                }],
                retired: None,
                outer_checksum: Some(vec![2; 32]),
                advisory_indexes: vec![],
                published_at: None,
            }],
            name: name.into(),
            repository: "hexpm".into(),
            advisories: vec![],
        }
    }

    #[test]
    fn good_files_verify_and_decode() {
        let v = verifier();
        assert_eq!(v.names(&registry_file(&names(), "test")).unwrap(), names());
        assert_eq!(
            v.versions(&registry_file(&versions(), "test")).unwrap(),
            versions()
        );
        let file = registry_file(&package("fixbar"), "test");
        assert_eq!(v.package("fixbar", &file).unwrap(), package("fixbar"));
        assert_eq!(
            v.verify(&RegistryFile::Package("fixbar".into()), &file),
            Ok(Verified::Package(package("fixbar")))
        );
        // The PKCS#1 form of the same key verifies the same files.
        let pkcs1 = RegistryVerifier::new(HexPublicKey::from_pem(TEST_KEY_RSA_PUB).unwrap());
        assert!(pkcs1.names(&registry_file(&names(), "test")).is_ok());
    }

    #[test]
    fn another_key_is_a_signature_error() {
        let file = registry_file(&package("fixbar"), "other");
        let err = verifier().package("fixbar", &file).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the registry file for 'fixbar' is signed by another key than the configured hex public key (hex.public_key)"
        );
        // ...and the other key accepts it.
        let other = RegistryVerifier::new(HexPublicKey::from_pem(OTHER_KEY_PUB).unwrap());
        assert!(other.package("fixbar", &file).is_ok());
        // hex.pm's real key accepts neither.
        let hexpm = RegistryVerifier::new(HexPublicKey::hexpm());
        assert!(matches!(
            hexpm.names(&registry_file(&names(), "test")),
            Err(RegistryError::BadSignature { .. })
        ));
    }

    #[test]
    fn a_tampered_payload_or_missing_signature_is_refused() {
        let payload = names().encode_to_vec();
        let signature = sign_with("test", &payload);
        let mut tampered = payload.clone();
        *tampered.last_mut().unwrap() ^= 1;
        let file = gzip(
            &Signed {
                payload: tampered,
                signature: Some(signature),
            }
            .encode_to_vec(),
        );
        assert!(matches!(
            verifier().names(&file),
            Err(RegistryError::BadSignature { .. })
        ));
        for signature in [None, Some(vec![])] {
            let file = gzip(
                &Signed {
                    payload: payload.clone(),
                    signature,
                }
                .encode_to_vec(),
            );
            assert_eq!(
                verifier().names(&file).unwrap_err().to_string(),
                "the registry file /names carries no signature"
            );
        }
    }

    #[test]
    fn another_repository_is_an_origin_error() {
        let mut evil = package("fixbar");
        evil.repository = "evil".into();
        let err = verifier()
            .package("fixbar", &registry_file(&evil, "test"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the registry file for 'fixbar' names the repository 'evil' where 'hexpm' was expected"
        );
        let mut names = names();
        names.repository = "evil".into();
        assert!(matches!(
            verifier().names(&registry_file(&names, "test")),
            Err(RegistryError::WrongRepository { .. })
        ));
        let mut versions = versions();
        versions.repository = String::new();
        assert!(matches!(
            verifier().versions(&registry_file(&versions, "test")),
            Err(RegistryError::WrongRepository { .. })
        ));
        // A verifier for another repository wants that name instead.
        let org = verifier().with_repository("acme");
        assert_eq!(org.repository(), "acme");
        assert!(org.names(&registry_file(&names, "test")).is_err());
    }

    #[test]
    fn another_package_is_an_origin_error() {
        let file = registry_file(&package("fixfoo"), "test");
        let err = verifier().package("fixbar", &file).unwrap_err();
        assert_eq!(
            err,
            RegistryError::WrongPackage {
                file: RegistryFile::Package("fixbar".into()),
                found: "fixfoo".into(),
                expected: "fixbar".into(),
            }
        );
        assert_eq!(
            err.to_string(),
            "the registry file for 'fixbar' describes the package 'fixfoo' where 'fixbar' was requested"
        );
    }

    #[test]
    fn a_payload_of_another_kind_fails() {
        // A Package decoded as Names: field 1 (releases) is not a valid NamesPackage, or the
        // repository does not match; either way it is refused.
        let file = registry_file(&package("fixbar"), "test");
        assert!(verifier().names(&file).is_err());
        // Garbage that is signed: a payload that is not protobuf at all.
        let payload = vec![0xff; 8];
        let signature = Some(sign_with("test", &payload));
        let file = gzip(&Signed { payload, signature }.encode_to_vec());
        let err = verifier().versions(&file).unwrap_err();
        assert!(
            matches!(
                err,
                RegistryError::BadPayload {
                    expected: "Versions",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn checksums_must_be_sha256_sized() {
        let mut bad = package("fixbar");
        bad.releases[0].outer_checksum = Some(vec![0; 20]);
        let err = verifier()
            .package("fixbar", &registry_file(&bad, "test"))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("release 0.1.0 an outer checksum of 20 bytes"),
            "{err}"
        );
        bad.releases[0].outer_checksum = None;
        assert!(verifier().package("fixbar", &registry_file(&bad, "test")).is_ok());
        bad.releases[0].inner_checksum.clear();
        assert!(matches!(
            verifier().package("fixbar", &registry_file(&bad, "test")),
            Err(RegistryError::BadChecksum {
                field: "inner checksum",
                len: 0,
                ..
            })
        ));
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let file = registry_file(&names(), "test");
        for cut in [file.len() - 1, file.len() - 8, file.len() / 2, 12] {
            let err = verifier().names(&file[..cut]).unwrap_err();
            assert!(
                matches!(err, RegistryError::Truncated { .. }),
                "cut at {cut}: {err}"
            );
        }
        assert_eq!(
            RegistryError::Truncated {
                file: RegistryFile::Names
            }
            .to_string(),
            "the registry file /names is truncated: its gzip stream ends early (an interrupted download?)"
        );
    }

    #[test]
    fn not_gzip_is_an_error() {
        let signed = Signed {
            payload: names().encode_to_vec(),
            signature: Some(vec![1]),
        }
        .encode_to_vec();
        // The last has the magic bytes but compression method 9, which is not deflate.
        let bad_method = [0x1f, 0x8b, 9, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8];
        for body in [&signed[..], b"", b"<html>404</html>", &bad_method] {
            let err = verifier().names(body).unwrap_err();
            assert!(matches!(err, RegistryError::NotGzip { .. }), "{err}");
            assert!(
                err.to_string()
                    .starts_with("the registry file /names is not valid gzip: "),
                "{err}"
            );
        }
        // A corrupted CRC.
        let mut file = registry_file(&names(), "test");
        let crc_at = file.len() - 8;
        file[crc_at] ^= 0xff;
        assert!(matches!(
            verifier().names(&file),
            Err(RegistryError::NotGzip { .. })
        ));
    }

    #[test]
    fn oversized_decompression_is_an_error() {
        // 1 MiB of zeros gzips to about 1 KiB.
        let bomb = gzip(&vec![0u8; 1024 * 1024]);
        assert!(bomb.len() < 8 * 1024);
        let v = verifier().with_max_decompressed(64 * 1024);
        let err = v.names(&bomb).unwrap_err();
        assert_eq!(
            err,
            RegistryError::TooLarge {
                file: RegistryFile::Names,
                limit: 64 * 1024
            }
        );
        // Exactly at the limit is fine.
        assert_eq!(gunzip_capped(&gzip(&[7; 100]), 100).unwrap(), [7; 100]);
        assert_eq!(
            gunzip_capped(&gzip(&[7; 101]), 100),
            Err(GunzipError::TooLarge { limit: 100 })
        );
    }

    #[test]
    fn a_body_that_is_not_signed_is_an_error() {
        let err = verifier().names(&gzip(b"\xff\xff\xff")).unwrap_err();
        assert!(matches!(err, RegistryError::NotSigned { .. }), "{err}");
    }

    #[test]
    fn files_are_named_by_path() {
        assert_eq!(RegistryFile::Names.path(), "/names");
        assert_eq!(RegistryFile::Versions.path(), "/versions");
        assert_eq!(RegistryFile::Package("x".into()).path(), "/packages/x");
        assert_eq!(RegistryFile::Versions.to_string(), "the registry file /versions");
    }
}
