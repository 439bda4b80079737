//! Package tarballs held in memory: the outer tar's members and its two checksums.
//!
//! The mirror's own check of a tarball is its sha256 against the registry's `outer_checksum`
//! (which a streaming hasher does while the file is stored). This module adds the check the
//! clients make after download, for tarballs that are in memory anyway: the `CHECKSUM` member is
//! the sha256 of `VERSION`, `metadata.config` and `contents.tar.gz` concatenated (hex_core's
//! `hex_tarball:inner_checksum/3`), upper-case hex.

use sha2::{Digest, Sha256};
use thiserror::Error;

use super::proto::Release;

/// The tarball format version this reads, as in the `VERSION` member.
pub const TARBALL_FORMAT_VERSION: &[u8] = b"3";

const BLOCK: usize = 512;

/// Why a tarball was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TarballError {
    #[error("the tarball is not a valid tar file: {0}")]
    NotTar(String),
    #[error("the tarball is truncated: the member '{0}' runs past its end")]
    Truncated(String),
    #[error("the tarball has no '{0}' member")]
    MissingMember(&'static str),
    #[error("the tarball has the member '{0}' twice")]
    DuplicateMember(String),
    #[error("the tarball's VERSION is '{0}'; only version 3 tarballs exist")]
    BadFormatVersion(String),
    #[error("the tarball's CHECKSUM member is not a hex-encoded sha256")]
    BadChecksumMember,
    #[error(
        "the tarball's CHECKSUM says {expected} but its VERSION, metadata.config and contents.tar.gz hash to {actual}"
    )]
    InnerMismatch { expected: String, actual: String },
    #[error("the tarball hashes to {actual} but the registry says {expected} (outer checksum)")]
    OuterMismatchesRegistry { expected: String, actual: String },
    #[error("the tarball's inner checksum is {actual} but the registry says {expected}")]
    InnerMismatchesRegistry { expected: String, actual: String },
}

/// The four members of an outer tarball, borrowed from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OuterTarball<'a> {
    pub version: &'a [u8],
    pub checksum: &'a [u8],
    pub metadata: &'a [u8],
    pub contents: &'a [u8],
}

/// Both checksums of a tarball, as raw sha256 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TarballChecksums {
    /// sha256 of the whole `.tar` (the registry's `outer_checksum`).
    pub outer: [u8; 32],
    /// sha256 of VERSION ‖ metadata.config ‖ contents.tar.gz, equal to the `CHECKSUM` member.
    pub inner: [u8; 32],
}

/// The inner checksum of a tarball's members.
pub fn inner_checksum(version: &[u8], metadata: &[u8], contents: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(version);
    hasher.update(metadata);
    hasher.update(contents);
    hasher.finalize().into()
}

/// Reads the outer tar (uncompressed ustar or GNU tar) and picks out its four members. Other
/// members are ignored, as are pax and GNU long-name records (the four names are short).
pub fn read_outer_tarball(tar: &[u8]) -> Result<OuterTarball<'_>, TarballError> {
    const NAMES: [&str; 4] = ["VERSION", "CHECKSUM", "metadata.config", "contents.tar.gz"];
    let mut found: [Option<&[u8]>; 4] = [None; 4];
    let mut at = 0;
    loop {
        let header = tar
            .get(at..at + BLOCK)
            .ok_or_else(|| TarballError::NotTar("it ends without an end-of-archive block".into()))?;
        if header.iter().all(|&b| b == 0) {
            break;
        }
        check_header_checksum(header)?;
        let name = entry_name(header)?;
        let size = octal(&header[124..136])
            .ok_or_else(|| TarballError::NotTar(format!("the size of '{name}' is not octal")))?;
        let start = at + BLOCK;
        let data = usize::try_from(size)
            .ok()
            .and_then(|size| tar.get(start..start.checked_add(size)?))
            .ok_or_else(|| TarballError::Truncated(name.clone()))?;
        if matches!(header[156], b'0' | 0) {
            let path = name.strip_prefix("./").unwrap_or(&name);
            if let Some(i) = NAMES.iter().position(|n| *n == path)
                && found[i].replace(data).is_some()
            {
                return Err(TarballError::DuplicateMember(path.to_owned()));
            }
        }
        at = start + data.len().next_multiple_of(BLOCK);
    }
    let member = |i: usize| found[i].ok_or(TarballError::MissingMember(NAMES[i]));
    Ok(OuterTarball {
        version: member(0)?,
        checksum: member(1)?,
        metadata: member(2)?,
        contents: member(3)?,
    })
}

/// Reads the tarball, checks its format version and that its `CHECKSUM` member matches its
/// contents, and returns both checksums.
pub fn check_tarball(tar: &[u8]) -> Result<TarballChecksums, TarballError> {
    let outer = read_outer_tarball(tar)?;
    if outer.version != TARBALL_FORMAT_VERSION {
        return Err(TarballError::BadFormatVersion(
            String::from_utf8_lossy(outer.version).into_owned(),
        ));
    }
    let expected: [u8; 32] = ::hex::decode(outer.checksum.trim_ascii())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(TarballError::BadChecksumMember)?;
    let inner = inner_checksum(outer.version, outer.metadata, outer.contents);
    if inner != expected {
        return Err(TarballError::InnerMismatch {
            expected: ::hex::encode(expected),
            actual: ::hex::encode(inner),
        });
    }
    Ok(TarballChecksums {
        outer: Sha256::digest(tar).into(),
        inner,
    })
}

/// Checks a tarball against its release in a verified `/packages/{name}`: the whole file's sha256
/// against `outer_checksum` (when the registry gives one), and the `CHECKSUM` member against both
/// its contents and the registry's `inner_checksum`.
pub fn verify_tarball(tar: &[u8], release: &Release) -> Result<TarballChecksums, TarballError> {
    let checksums = check_tarball(tar)?;
    if let Some(expected) = &release.outer_checksum
        && expected.as_slice() != checksums.outer
    {
        return Err(TarballError::OuterMismatchesRegistry {
            expected: ::hex::encode(expected),
            actual: ::hex::encode(checksums.outer),
        });
    }
    if release.inner_checksum.as_slice() != checksums.inner {
        return Err(TarballError::InnerMismatchesRegistry {
            expected: ::hex::encode(&release.inner_checksum),
            actual: ::hex::encode(checksums.inner),
        });
    }
    Ok(checksums)
}

/// The sum of the header's bytes, the checksum field counted as spaces, must equal that field.
fn check_header_checksum(header: &[u8]) -> Result<(), TarballError> {
    let stored = octal(&header[148..156])
        .ok_or_else(|| TarballError::NotTar("a header checksum is not octal".into()))?;
    let sum: u64 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u64::from(b) })
        .sum();
    if sum == stored {
        Ok(())
    } else {
        Err(TarballError::NotTar("a header checksum does not match".into()))
    }
}

/// The entry's path: the ustar `prefix` (when the magic is POSIX ustar) joined to `name`.
fn entry_name(header: &[u8]) -> Result<String, TarballError> {
    let field = |range: std::ops::Range<usize>| {
        let bytes = &header[range];
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8(bytes[..end].to_vec())
            .map_err(|_| TarballError::NotTar("a member name is not UTF-8".into()))
    };
    let name = field(0..100)?;
    let prefix = if &header[257..263] == b"ustar\0" {
        field(345..500)?
    } else {
        String::new()
    };
    Ok(if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    })
}

/// An octal number field (digits, then NUL or spaces); leading spaces are allowed.
fn octal(field: &[u8]) -> Option<u64> {
    let digits = field
        .iter()
        .skip_while(|&&b| b == b' ')
        .take_while(|&&b| b != 0 && b != b' ');
    let mut value: u64 = 0;
    let mut any = false;
    for &b in digits {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        value = value.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
        any = true;
    }
    any.then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex::test_support::tar;

    fn good_members() -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
        let metadata = b"{<<\"name\">>,<<\"fixbar\">>}.\n".to_vec();
        let contents = b"\x1f\x8bnot really gzip".to_vec();
        let checksum = ::hex::encode_upper(inner_checksum(b"3", &metadata, &contents));
        let members = vec![
            ("VERSION".to_owned(), b"3".to_vec()),
            ("CHECKSUM".to_owned(), checksum.into_bytes()),
            ("metadata.config".to_owned(), metadata),
            ("contents.tar.gz".to_owned(), contents),
        ];
        let refs: Vec<(&str, &[u8])> = members.iter().map(|(p, d)| (p.as_str(), d.as_slice())).collect();
        (tar(&refs), members)
    }

    #[test]
    fn a_good_tarball_checks() {
        let (bytes, members) = good_members();
        let outer = read_outer_tarball(&bytes).unwrap();
        assert_eq!(outer.version, b"3");
        assert_eq!(outer.metadata, members[2].1.as_slice());
        assert_eq!(outer.contents, members[3].1.as_slice());
        let sums = check_tarball(&bytes).unwrap();
        assert_eq!(sums.outer, <[u8; 32]>::from(Sha256::digest(&bytes)));
        assert_eq!(::hex::encode_upper(sums.inner).as_bytes(), outer.checksum);

        let mut release = Release {
            version: "0.1.0".into(),
            inner_checksum: sums.inner.to_vec(),
            outer_checksum: Some(sums.outer.to_vec()),
            ..Release::default()
        };
        assert_eq!(verify_tarball(&bytes, &release), Ok(sums));
        release.outer_checksum = Some(vec![0; 32]);
        assert!(matches!(
            verify_tarball(&bytes, &release),
            Err(TarballError::OuterMismatchesRegistry { .. })
        ));
        release.outer_checksum = None;
        release.inner_checksum = vec![0; 32];
        assert!(matches!(
            verify_tarball(&bytes, &release),
            Err(TarballError::InnerMismatchesRegistry { .. })
        ));
    }

    #[test]
    fn a_lower_case_checksum_member_is_accepted() {
        let (_, mut members) = good_members();
        members[1].1 = members[1].1.to_ascii_lowercase();
        let refs: Vec<(&str, &[u8])> = members.iter().map(|(p, d)| (p.as_str(), d.as_slice())).collect();
        assert!(check_tarball(&tar(&refs)).is_ok());
    }

    #[test]
    fn tampered_and_malformed_tarballs_fail() {
        let (bytes, members) = good_members();
        let with = |i: usize, data: &[u8]| {
            let refs: Vec<(&str, &[u8])> = members
                .iter()
                .enumerate()
                .map(|(j, (p, d))| (p.as_str(), if i == j { data } else { d.as_slice() }))
                .collect();
            tar(&refs)
        };
        assert!(matches!(
            check_tarball(&with(3, b"other contents")),
            Err(TarballError::InnerMismatch { .. })
        ));
        assert_eq!(
            check_tarball(&with(0, b"2")),
            Err(TarballError::BadFormatVersion("2".into()))
        );
        assert_eq!(
            check_tarball(&with(1, b"not hex")),
            Err(TarballError::BadChecksumMember)
        );
        assert_eq!(
            check_tarball(&tar(&[("VERSION", b"3")])),
            Err(TarballError::MissingMember("CHECKSUM"))
        );
        let dup = tar(&[("VERSION", b"3"), ("VERSION", b"3")]);
        assert_eq!(
            read_outer_tarball(&dup),
            Err(TarballError::DuplicateMember("VERSION".into()))
        );
        // A flipped byte in a header breaks its checksum.
        let mut corrupt = bytes.clone();
        corrupt[3] ^= 1;
        assert!(matches!(check_tarball(&corrupt), Err(TarballError::NotTar(_))));
        // Cut inside a member, and cut before the end-of-archive blocks.
        let contents_header = bytes.windows(15).position(|w| w == b"contents.tar.gz").unwrap();
        assert_eq!(
            check_tarball(&bytes[..contents_header + 512 + 5]),
            Err(TarballError::Truncated("contents.tar.gz".into()))
        );
        assert!(matches!(
            check_tarball(&bytes[..bytes.len() - 1024]),
            Err(TarballError::NotTar(_))
        ));
        assert!(matches!(check_tarball(b""), Err(TarballError::NotTar(_))));
    }

    #[test]
    fn octal_fields() {
        assert_eq!(octal(b"0000644\0"), Some(0o644));
        assert_eq!(octal(b"  1234 \0"), Some(0o1234));
        assert_eq!(octal(b"\0\0\0"), None);
        assert_eq!(octal(b"0009\0"), None);
    }
}
