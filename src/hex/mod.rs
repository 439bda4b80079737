//! The hex repository protocol (repo.hex.pm) as pure functions: the protobuf registry messages,
//! verifying a registry file as fetched (gzip, signature, origin), hex.pm's public key, package
//! names and request paths, and tarball checksums. Nothing here does I/O: callers hand in bytes.
//!
//! The facts this follows (formats, field numbers, what clients check) are hex's repository
//! specification; hex_core (`hex_registry.erl`, `hex_tarball.erl`) is the reference client.

pub mod api;
pub mod hosted;
pub mod key;
pub mod name;
pub mod path;
pub mod proto;
pub mod publish;
pub mod registry;
pub mod release;
pub mod resign;
pub mod tarball;
pub mod terms;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod test_support;

pub use key::{HEXPM_PUBLIC_KEY_PEM, HexPublicKey, HexSigningKey, KeyError};
pub use name::{
    MAX_PACKAGE_NAME_LEN, MAX_VERSION_LEN, NameError, split_docs_name, split_tarball_name, tarball_name,
    validate_package_name, validate_version,
};
pub use path::{PathError, RepoPath, normalize_path, parse_path};
pub use proto::{
    Dependency, Names, NamesPackage, Package, Release, RetirementReason, RetirementStatus, Signed, Timestamp,
    Versions, VersionsPackage,
};
pub use registry::{
    DEFAULT_MAX_DECOMPRESSED, GunzipError, HEXPM_REPOSITORY, RegistryError, RegistryFile, RegistryVerifier,
    Verified, gunzip_capped,
};
pub use release::{DependencyInfo, ReleaseInfo, Retirement};
pub use tarball::{
    OuterTarball, TarballChecksums, TarballError, check_tarball, inner_checksum, read_outer_tarball,
    verify_tarball,
};
