//! The protobuf messages of the hex repository (proto2), written by hand with `prost`'s derive so
//! the build needs no `protoc`. Field numbers follow hex_core's `proto/*.proto`; a field added
//! upstream later is skipped on decode (prost ignores unknown fields), which is what the clients do.
//!
//! proto2 `required` scalars are plain fields here: prost neither checks their presence on decode
//! nor lets us tell "absent" from "default", so the checks that matter (repository, name,
//! checksum lengths) are made on the values by [`super::registry`].
//!
//! Three messages are called `Package` in the `.proto` files; here the entries of `/names` and
//! `/versions` are [`NamesPackage`] and [`VersionsPackage`], and [`Package`] is `/packages/{name}`.

use prost::{Enumeration, Message};

/// The envelope of every registry file (after gunzip): the payload bytes and their signature.
#[derive(Clone, PartialEq, Message)]
pub struct Signed {
    /// An encoded [`Names`], [`Versions`] or [`Package`].
    #[prost(bytes = "vec", required, tag = "1")]
    pub payload: Vec<u8>,
    /// RSASSA-PKCS1-v1_5 with SHA-512 over `payload`, by the repository's key.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub signature: Option<Vec<u8>>,
}

/// `/names`: every package in the repository.
#[derive(Clone, PartialEq, Message)]
pub struct Names {
    #[prost(message, repeated, tag = "1")]
    pub packages: Vec<NamesPackage>,
    /// The repository's name (`hexpm`); checked against the expected one.
    #[prost(string, required, tag = "2")]
    pub repository: String,
}

/// One entry of [`Names`] (`Package` in `hex_pb_names.proto`).
#[derive(Clone, PartialEq, Message)]
pub struct NamesPackage {
    #[prost(string, required, tag = "1")]
    pub name: String,
    // Tag 2 (`repository`) is deprecated and never sent.
    #[prost(message, optional, tag = "3")]
    pub updated_at: Option<Timestamp>,
}

/// `/versions`: every package with its versions.
#[derive(Clone, PartialEq, Message)]
pub struct Versions {
    #[prost(message, repeated, tag = "1")]
    pub packages: Vec<VersionsPackage>,
    /// The repository's name (`hexpm`); checked against the expected one.
    #[prost(string, required, tag = "2")]
    pub repository: String,
}

/// One entry of [`Versions`] (`Package` in `hex_pb_versions.proto`).
#[derive(Clone, PartialEq, Message)]
pub struct VersionsPackage {
    #[prost(string, required, tag = "1")]
    pub name: String,
    #[prost(string, repeated, tag = "2")]
    pub versions: Vec<String>,
    /// Zero-based indexes into `versions` of the retired ones.
    #[prost(int32, repeated, packed = "true", tag = "3")]
    pub retired: Vec<i32>,
    // Tag 4 (`repository`) is deprecated and never sent.
    /// Zero-based indexes into `versions` of those with security advisories.
    #[prost(int32, repeated, packed = "true", tag = "5")]
    pub with_advisories: Vec<i32>,
}

/// `/packages/{name}`: one package's releases.
#[derive(Clone, PartialEq, Message)]
pub struct Package {
    #[prost(message, repeated, tag = "1")]
    pub releases: Vec<Release>,
    /// Checked against the requested name: a file for another package is refused.
    #[prost(string, required, tag = "2")]
    pub name: String,
    /// Checked against the expected repository (`hexpm`).
    #[prost(string, required, tag = "3")]
    pub repository: String,
    #[prost(message, repeated, tag = "4")]
    pub advisories: Vec<SecurityAdvisory>,
}

/// One release of a [`Package`].
#[derive(Clone, PartialEq, Message)]
pub struct Release {
    #[prost(string, required, tag = "1")]
    pub version: String,
    /// sha256 of VERSION, metadata.config and contents.tar.gz concatenated (the tarball's
    /// `CHECKSUM` member); deprecated upstream in favour of `outer_checksum`.
    #[prost(bytes = "vec", required, tag = "2")]
    pub inner_checksum: Vec<u8>,
    #[prost(message, repeated, tag = "3")]
    pub dependencies: Vec<Dependency>,
    /// Set when the release is retired.
    #[prost(message, optional, tag = "4")]
    pub retired: Option<RetirementStatus>,
    /// sha256 of the whole `.tar`: what a mirror checks a downloaded tarball against. Required when
    /// hex.pm encodes, optional when decoding (very old files lack it).
    #[prost(bytes = "vec", optional, tag = "5")]
    pub outer_checksum: Option<Vec<u8>>,
    /// Indexes into [`Package::advisories`]; proto2 `repeated uint32` without `packed`.
    #[prost(uint32, repeated, packed = "false", tag = "6")]
    pub advisory_indexes: Vec<u32>,
    #[prost(message, optional, tag = "7")]
    pub published_at: Option<Timestamp>,
}

/// A dependency of a [`Release`].
#[derive(Clone, PartialEq, Message)]
pub struct Dependency {
    /// The package depended on.
    #[prost(string, required, tag = "1")]
    pub package: String,
    /// An Elixir version requirement such as `~> 1.0`.
    #[prost(string, required, tag = "2")]
    pub requirement: String,
    #[prost(bool, optional, tag = "3")]
    pub optional: Option<bool>,
    /// The OTP application name when it differs from the package name.
    #[prost(string, optional, tag = "4")]
    pub app: Option<String>,
    /// The repository of the dependency when it is not this one.
    #[prost(string, optional, tag = "5")]
    pub repository: Option<String>,
}

/// Why and how a release was retired.
#[derive(Clone, PartialEq, Message)]
pub struct RetirementStatus {
    #[prost(enumeration = "RetirementReason", required, tag = "1")]
    pub reason: i32,
    #[prost(string, optional, tag = "2")]
    pub message: Option<String>,
}

/// The reason a release was retired. Values the enum does not know (a newer hex.pm) read as
/// [`RetirementReason::Other`] through [`RetirementStatus::reason()`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enumeration)]
#[repr(i32)]
pub enum RetirementReason {
    Other = 0,
    Invalid = 1,
    Security = 2,
    Deprecated = 3,
    Renamed = 4,
}

impl RetirementReason {
    /// The lower-case word hex uses for the reason (`mix hex.retire`'s argument).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Other => "other",
            Self::Invalid => "invalid",
            Self::Security => "security",
            Self::Deprecated => "deprecated",
            Self::Renamed => "renamed",
        }
    }
}

/// A security advisory affecting releases of a [`Package`].
#[derive(Clone, PartialEq, Message)]
pub struct SecurityAdvisory {
    #[prost(string, required, tag = "1")]
    pub id: String,
    #[prost(string, required, tag = "2")]
    pub summary: String,
    #[prost(string, required, tag = "3")]
    pub html_url: String,
    #[prost(enumeration = "AdvisorySeverity", optional, tag = "4")]
    pub severity: Option<i32>,
    #[prost(float, optional, tag = "5")]
    pub cvss_score: Option<f32>,
    #[prost(string, required, tag = "6")]
    pub api_url: String,
    #[prost(string, repeated, tag = "7")]
    pub aliases: Vec<String>,
}

/// The severity of a [`SecurityAdvisory`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enumeration)]
#[repr(i32)]
pub enum AdvisorySeverity {
    None = 0,
    Low = 1,
    Medium = 2,
    High = 3,
    Critical = 4,
}

/// A point in time, as `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, Message)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    #[prost(int64, required, tag = "1")]
    pub seconds: i64,
    #[prost(int32, required, tag = "2")]
    pub nanos: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_skipped() {
        let mut bytes = Timestamp { seconds: 7, nanos: 1 }.encode_to_vec();
        // Field 9, varint 5; then field 10, length-delimited "ab".
        bytes.extend_from_slice(&[9 << 3, 5, (10 << 3) | 2, 2, b'a', b'b']);
        let decoded = Timestamp::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded, Timestamp { seconds: 7, nanos: 1 });
    }

    #[test]
    fn field_numbers_match_the_proto_files() {
        // Hand-encoded wire bytes: a Release with version (1), inner_checksum (2), outer (5),
        // retired (4, reason 2 = security) and advisory_indexes (6) both unpacked and packed.
        let bytes = [
            0x0a, 3, b'1', b'.', b'0', // 1: "1.0"
            0x12, 1, 0xaa, // 2: inner
            0x22, 2, 0x08, 2, // 4: RetirementStatus{reason: 2}
            0x2a, 1, 0xbb, // 5: outer
            0x30, 3, // 6: 3 (unpacked)
            0x32, 1, 4, // 6: [4] (packed)
            0x3a, 2, 0x08, 9, // 7: Timestamp{seconds: 9}
        ];
        let release = Release::decode(bytes.as_slice()).unwrap();
        assert_eq!(release.version, "1.0");
        assert_eq!(release.inner_checksum, [0xaa]);
        assert_eq!(release.outer_checksum.as_deref(), Some(&[0xbb][..]));
        assert_eq!(
            release.retired.as_ref().unwrap().reason(),
            RetirementReason::Security
        );
        assert_eq!(release.advisory_indexes, [3, 4]);
        assert_eq!(release.published_at.unwrap().seconds, 9);

        // The packed int32 lists of /versions.
        let bytes = [0x0a, 9, 0x0a, 1, b'a', 0x12, 1, b'1', 0x1a, 1, 0];
        let package = Versions::decode(bytes.as_slice()).unwrap().packages.remove(0);
        assert_eq!(package.name, "a");
        assert_eq!(package.versions, ["1"]);
        assert_eq!(package.retired, [0]);
    }

    #[test]
    fn unknown_retirement_reasons_read_as_other() {
        let status = RetirementStatus {
            reason: 42,
            message: None,
        };
        assert_eq!(status.reason(), RetirementReason::Other);
        assert_eq!(RetirementReason::Renamed.as_str(), "renamed");
    }
}
